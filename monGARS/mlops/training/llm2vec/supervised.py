"""Supervised contrastive training: (query, positive, hard negative) triples, in-batch negatives.

LLM2Vec's last, supervised step (BehnamGhader et al. 2024, ``experiments/run_supervised.py``):
each query is pulled towards its positive passage and pushed away from every other passage of the
batch, the other queries' positives and all the hard negatives. Upstream's ``HardNegativeNLLLoss``:
``cross_entropy(cos(q_i, [P; N]_j) * loss_scale, target j = i)`` with ``loss_scale = 1 / T``.

The pairs come from the retrieval corpus' train split (``corpora/retrieval/train.jsonl``, records
``{"query", "positives": [...], "negatives": [...]}``). Records whose query the evaluation scores
are left out, and so is every passage it scores: no text of the evaluation is ever trained on.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.common.jsonl import read_jsonl
from monGARS.mlops.training.llm2vec.encoder import encode_batch


@dataclass(frozen=True)
class ContrastiveRecord:
    """One query with its positive passages and (possibly no) hard negatives."""

    query: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]


@dataclass
class ContrastiveBatch:
    """Row i: ``queries[i]`` matches ``positives[i]``; ``negatives`` are the batch's hard ones.

    ``known_positives[i]`` holds every positive text of query i's record, so a candidate that is
    another row's copy of one of them is not counted as a negative (no false negatives).
    """

    queries: list[str]
    positives: list[str]
    negatives: list[str]
    known_positives: list[frozenset[str]]


def _clean(values: Any) -> list[str]:
    if not isinstance(values, list):
        return []
    seen: list[str] = []
    for value in values:
        if isinstance(value, str) and value.strip() and value.strip() not in seen:
            seen.append(value.strip())
    return seen


def contrastive_records(
    records: Sequence[dict[str, Any]], exclude: Collection[str] = ()
) -> tuple[list[ContrastiveRecord], int]:
    """Usable training records and how many were dropped because the evaluation scores them.

    ``exclude`` holds the evaluation's queries and passages (compared stripped): a record whose
    query is one of them is dropped, and so is each of its passages that is one of them; a record
    left without a positive is dropped too.
    """
    held_out = {text.strip() for text in exclude}
    usable: list[ContrastiveRecord] = []
    dropped = 0
    for record in records:
        query = record.get("query")
        if not isinstance(query, str) or not query.strip():
            continue
        all_positives = _clean(record.get("positives"))
        positives = [p for p in all_positives if p not in held_out]
        negatives = [n for n in _clean(record.get("negatives")) if n not in held_out]
        negatives = [n for n in negatives if n not in all_positives]
        if query.strip() in held_out or not positives:
            dropped += bool(all_positives)
            continue
        usable.append(ContrastiveRecord(query.strip(), tuple(positives), tuple(negatives)))
    return usable, dropped


def load_contrastive_records(
    datasets_dir: str | Path, exclude: Collection[str] = ()
) -> tuple[list[ContrastiveRecord], int]:
    """Records of ``corpora/retrieval/train.jsonl`` (never val), eval texts left out."""
    path = Path(datasets_dir) / "corpora" / "retrieval" / "train.jsonl"
    if not path.is_file():
        return [], 0
    return contrastive_records(read_jsonl(path), exclude)


def cycle_contrastive_batches(
    records: Sequence[ContrastiveRecord], batch_size: int, hard_negatives: int, seed: int
) -> Iterator[ContrastiveBatch]:
    """Endless batches of distinct records, reshuffled (seeded) every pass.

    Each time a record is drawn it contributes one of its positives and up to ``hard_negatives``
    of its negatives, picked at random, so records with several passages show all of them over the
    passes. A batch never holds the same query twice.
    """
    if len(records) < 2:
        raise MongarsError(
            f"supervised: {len(records)} usable retrieval training pairs; at least 2 are needed "
            "for in-batch negatives (use contrastive_mode 'unsupervised')"
        )
    rng = random.Random(seed)
    order = list(records)
    size = min(batch_size, len(order))
    while True:
        rng.shuffle(order)
        for start in range(0, len(order) - size + 1, size):
            chosen = order[start : start + size]
            negatives: list[str] = []
            for record in chosen:
                count = min(hard_negatives, len(record.negatives))
                negatives.extend(rng.sample(record.negatives, count))
            yield ContrastiveBatch(
                queries=[record.query for record in chosen],
                positives=[rng.choice(record.positives) for record in chosen],
                negatives=negatives,
                known_positives=[frozenset(record.positives) for record in chosen],
            )


def false_negative_mask(batch: ContrastiveBatch) -> list[list[bool]]:
    """[queries, positives + negatives]: True where a non-target candidate is a known positive."""
    candidates = [*batch.positives, *batch.negatives]
    return [
        [j != i and text in known for j, text in enumerate(candidates)]
        for i, known in enumerate(batch.known_positives)
    ]


def hard_negative_info_nce(
    queries: Any,
    positives: Any,
    negatives: Any | None,
    temperature: float,
    mask: Any | None = None,
) -> Any:
    """InfoNCE of queries [B, d] against positives [B, d] then negatives [N, d].

    Row i's target is column i (its own positive); every other positive and every negative is a
    negative. ``mask`` [B, B+N] (True = ignore) removes false negatives from the softmax.
    """
    import torch

    q = torch.nn.functional.normalize(queries.float(), dim=-1)
    candidates = positives if negatives is None or negatives.shape[0] == 0 else None
    if candidates is None:
        candidates = torch.cat([positives, negatives], dim=0)
    d = torch.nn.functional.normalize(candidates.float(), dim=-1)
    logits = q @ d.T / temperature
    if mask is not None:
        logits = logits.masked_fill(mask.to(logits.device), float("-inf"))
    targets = torch.arange(logits.shape[0], device=logits.device)
    return torch.nn.functional.cross_entropy(logits, targets)


def make_supervised_step(
    model: Any,
    tokenizer: Any,
    batches: Iterator[ContrastiveBatch],
    *,
    max_length: int,
    temperature: float,
    query_instruction: str | None = None,
) -> Any:
    """A closure computing one micro-batch's supervised loss: queries, then all passages.

    Data-parallel ranks encode their slice of the queries, of the positives and of the hard
    negatives, and gather every rank's embeddings with gradients (``distributed.gather_rows``):
    each query is scored against the global batch's passages, as in one process; each rank
    returns its share, loss / ranks.

    Queries are read after ``query_instruction`` (pooled over the query's own tokens), passages
    without one, as upstream's E5 training data and ``LLM2Vec.encode`` do.
    """
    import torch

    from monGARS.mlops.training.common.distributed import current_world, gather_rows, shard

    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = causal_lm.base_model
    world = current_world()

    def step() -> Any:
        batch = next(batches)
        rows = shard(len(batch.queries), world)
        negatives = batch.negatives[shard(len(batch.negatives), world)]
        queries = encode_batch(
            backbone, tokenizer, batch.queries[rows], max_length, query_instruction
        )
        passages = encode_batch(
            backbone, tokenizer, [*batch.positives[rows], *negatives], max_length
        )
        size = len(batch.queries[rows])
        queries = gather_rows(world, queries)
        positives = gather_rows(world, passages[:size])
        hard = gather_rows(world, passages[size:]) if batch.negatives else passages[size:]
        mask = torch.tensor(false_negative_mask(batch), dtype=torch.bool)
        loss = hard_negative_info_nce(
            queries, positives, hard, temperature, mask if mask.any() else None
        )
        return loss / world.size

    return step
