"""Retrieval metrics: how well an encoder ranks each query's positives in a shared passage pool.

Definitions (per query, then averaged over queries):

- recall@k: the fraction of the query's relevant passages found in the top k;
- MRR: 1 / rank of the first relevant passage (ranks start at 1).

Passages are ranked by cosine similarity, highest first; ties keep the pool order (a stable sort),
so a degenerate encoder that gives every passage the same score is not rewarded by luck.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from monGARS.mlops.errors import MongarsError

DEFAULT_KS = (1, 10)


def rank_passages(similarity: np.ndarray) -> np.ndarray:
    """Pool indices of each row sorted by decreasing similarity (stable on ties)."""
    return np.argsort(-similarity, axis=1, kind="stable")


def retrieval_metrics(
    similarity: np.ndarray, relevant: Sequence[set[int]], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """recall@k for each k and MRR from a [queries, passages] similarity matrix."""
    scores = np.asarray(similarity, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != len(relevant):
        raise MongarsError(
            f"retrieval: similarity has shape {scores.shape} for {len(relevant)} queries; "
            "expected [queries, passages]"
        )
    if scores.shape[0] == 0:
        raise MongarsError("retrieval: no queries to evaluate; the retrieval split is empty")
    for row, wanted in enumerate(relevant):
        if not wanted or not all(0 <= i < scores.shape[1] for i in wanted):
            raise MongarsError(
                f"retrieval: query {row} has relevant passages {sorted(wanted)} outside the pool "
                f"of {scores.shape[1]}"
            )
    order = rank_passages(scores)
    recalls = {k: [] for k in ks}
    reciprocal = []
    for row, wanted in enumerate(relevant):
        ranked = order[row].tolist()
        first = min(ranked.index(i) for i in wanted) + 1
        reciprocal.append(1.0 / first)
        for k in ks:
            recalls[k].append(len(wanted & set(ranked[:k])) / len(wanted))
    metrics = {f"recall_at_{k}": float(np.mean(values)) for k, values in recalls.items()}
    metrics["mrr"] = float(np.mean(reciprocal))
    return metrics


def cosine_similarity(queries: np.ndarray, passages: np.ndarray) -> np.ndarray:
    """Cosine similarity matrix; rows are normalised here so callers may pass raw embeddings."""

    def normalise(matrix: np.ndarray) -> np.ndarray:
        matrix = np.asarray(matrix, dtype=np.float64)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix / np.maximum(norms, 1e-12)

    return normalise(queries) @ normalise(passages).T


def evaluate_retrieval(
    embed: Callable[[list[str]], np.ndarray],
    queries: Sequence[str],
    passages: Sequence[str],
    relevant: Sequence[set[int]],
    ks: Sequence[int] = DEFAULT_KS,
    embed_queries: Callable[[list[str]], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Embed the pool with ``embed``, the queries with ``embed_queries`` (an LLM2Vec encoder
    reads them after its query instruction; default ``embed``), and score the ranking."""
    query_vectors = (embed_queries or embed)(list(queries))
    similarity = cosine_similarity(query_vectors, embed(list(passages)))
    metrics: dict[str, Any] = retrieval_metrics(similarity, relevant, ks)
    metrics["queries"] = len(queries)
    metrics["passages"] = len(passages)
    return metrics
