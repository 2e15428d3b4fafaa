"""Text for the llm2vec stage: training texts from the datasets artifact, the retrieval eval set.

MNTP and SimCSE are unsupervised: they need plain texts, not pairs. Each record contributes its
separate pieces (an instruction and its answer, each conversation turn, a retrieval query and each
passage, a module record's turns and the code fact it was mined from), so SimCSE sees sentence- to
paragraph-sized texts. The supervised phase reads the retrieval train pairs itself
(llm2vec_supervised.py). Texts the retrieval evaluation scores (its queries and passages) are never
training text, and its queries are never training pairs, so the before/after figures are measured
on text the encoder has not been trained on.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.tiny_model import iter_strings
from monGARS.mlops.training.common.jsonl import read_jsonl

CORPUS_SOURCES = ("instruction", "reasoning", "conversation", "retrieval")
MODULE_SOURCE = "module"
# Strings from a module record's ``fact`` shorter than this are names and paths, not text.
_MIN_FACT_CHARS = 20


def _message_texts(record: dict[str, Any]) -> Iterator[str]:
    for message in record.get("messages") or []:
        if isinstance(message, dict) and message.get("role") != "system":
            content = message.get("content")
            if isinstance(content, str):
                yield content


def record_texts(source: str, record: dict[str, Any]) -> Iterator[str]:
    """The separate texts one record of ``source`` contributes."""
    if source == "instruction":
        prompt = "\n".join(
            part
            for part in (record.get("instruction"), record.get("input"))
            if isinstance(part, str)
        )
        yield prompt
        yield str(record.get("output") or "")
    elif source == "reasoning":
        yield str(record.get("question") or "")
        yield "\n".join(
            part
            for part in (record.get("reasoning"), record.get("answer"))
            if isinstance(part, str)
        )
    elif source == "conversation":
        yield from _message_texts(record)
    elif source == "retrieval":
        yield str(record.get("query") or "")
        yield from iter_strings(record.get("positives") or [])
        yield from iter_strings(record.get("negatives") or [])
    elif source == MODULE_SOURCE:
        yield from _message_texts(record)
        for text in iter_strings(record.get("fact") or {}):
            if len(text.strip()) >= _MIN_FACT_CHARS:
                yield text
    else:
        raise MongarsError(f"text_sources: unknown source {source!r}")


@dataclass
class TrainingTexts:
    """Deduplicated, shuffled training texts and where they came from."""

    texts: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    excluded: int = 0  # distinct texts left out because the evaluation scores them


def source_path(datasets_dir: Path, source: str, module: str | None) -> Path:
    if source == MODULE_SOURCE:
        return datasets_dir / "modules" / str(module) / "train.jsonl"
    return datasets_dir / "corpora" / source / "train.jsonl"


def load_training_texts(
    datasets_dir: str | Path,
    module: str | None,
    sources: Sequence[str],
    *,
    seed: int,
    max_texts: int = 0,
    exclude: Collection[str] = (),
) -> TrainingTexts:
    """Texts from the train splits of ``sources``; only the train split, never val.

    ``exclude`` holds texts (compared stripped) that must not be trained on: the evaluation's
    queries and passages, which the train+val fallback of :func:`load_retrieval_eval` draws from
    the train split too.
    """
    root = Path(datasets_dir)
    if not root.is_dir():
        raise MongarsError(f"datasets_dir: {root} is not a folder; pass the datasets artifact")
    if MODULE_SOURCE in sources and module is not None:
        module_dir = root / "modules" / module
        if not module_dir.is_dir():
            available = sorted(p.name for p in (root / "modules").glob("*") if p.is_dir())
            raise MongarsError(
                f"module: {module!r} has no folder in {root / 'modules'}; "
                f"modules in this datasets artifact: {', '.join(available) or 'none'}"
            )
    held_out = {text.strip() for text in exclude}
    seen: set[str] = set()
    excluded: set[str] = set()
    texts: list[str] = []
    counts: dict[str, int] = {}
    missing: list[str] = []
    for source in sources:
        if source == MODULE_SOURCE and module is None:
            missing.append(source)
            continue
        path = source_path(root, source, module)
        if not path.is_file():
            missing.append(source)
            continue
        added = 0
        for record in read_jsonl(path):
            for text in record_texts(source, record):
                cleaned = text.strip()
                if cleaned in held_out:
                    excluded.add(cleaned)
                elif cleaned and cleaned not in seen:
                    seen.add(cleaned)
                    texts.append(cleaned)
                    added += 1
        counts[source] = added
    random.Random(seed).shuffle(texts)
    if max_texts:
        texts = texts[:max_texts]
    return TrainingTexts(texts=texts, counts=counts, missing=missing, excluded=len(excluded))


@dataclass
class RetrievalSet:
    """Queries against a pool of passages; ``relevant[i]`` holds the pool indices of query i."""

    queries: list[str]
    passages: list[str]
    relevant: list[set[int]]
    split: str
    note: str = ""


def build_retrieval_set(
    records: Sequence[dict[str, Any]], split: str, note: str = ""
) -> RetrievalSet:
    """Pool every positive and negative passage once; a query's positives are its relevant."""
    index: dict[str, int] = {}
    passages: list[str] = []
    queries: list[str] = []
    relevant: list[set[int]] = []

    def pool(text: str) -> int:
        if text not in index:
            index[text] = len(passages)
            passages.append(text)
        return index[text]

    for record in records:
        query = record.get("query")
        positives = [p.strip() for p in record.get("positives") or [] if isinstance(p, str)]
        positives = [p for p in positives if p]
        if not isinstance(query, str) or not query.strip() or not positives:
            continue
        negatives = [n.strip() for n in record.get("negatives") or [] if isinstance(n, str)]
        queries.append(query.strip())
        relevant.append({pool(p) for p in positives})
        for negative in negatives:
            if negative:
                pool(negative)
    return RetrievalSet(queries, passages, relevant, split, note)


def _usable(record: dict[str, Any]) -> bool:
    """A record the evaluation can score: a query and at least one positive passage."""
    query = record.get("query")
    positives = record.get("positives") or []
    return (
        isinstance(query, str)
        and bool(query.strip())
        and isinstance(positives, list)
        and any(isinstance(p, str) and p.strip() for p in positives)
    )


def holdout_key(record: dict[str, Any]) -> str:
    """Order in which train records are held out for evaluation: a hash of the query text, so the
    choice is the same for every seed and does not depend on the file's order."""
    return hashlib.sha256(str(record.get("query", "")).strip().encode("utf-8")).hexdigest()


def load_retrieval_eval(datasets_dir: str | Path, min_queries: int) -> RetrievalSet:
    """The held-out retrieval split, topped up from train when val has < ``min_queries`` queries.

    When val is too small, the ``min_queries - len(val)`` train records first in
    :func:`holdout_key` order join it (``split`` "val+train", announced in ``note``). The caller
    must leave every query and passage of the set out of training (the stage passes them as
    ``exclude`` to :func:`load_training_texts` and to the supervised pairs): the figures stay on
    queries and passages the encoder was never trained on, as text or as a pair.
    """
    folder = Path(datasets_dir) / "corpora" / "retrieval"
    val_path, train_path = folder / "val.jsonl", folder / "train.jsonl"
    val_records = [r for r in (read_jsonl(val_path) if val_path.is_file() else []) if _usable(r)]
    held_out = build_retrieval_set(val_records, "val")
    if len(held_out.queries) >= min_queries:
        return held_out
    train_records = read_jsonl(train_path) if train_path.is_file() else []
    val_queries = set(held_out.queries)
    candidates = sorted(
        (r for r in train_records if _usable(r) and r["query"].strip() not in val_queries),
        key=holdout_key,
    )
    extra = candidates[: min_queries - len(held_out.queries)]
    combined = build_retrieval_set(
        [*val_records, *extra],
        "val+train",
        note=(
            f"val has {len(held_out.queries)} usable queries (< min_eval_queries={min_queries}); "
            f"{len(extra)} train records (chosen by a hash of the query) were added to it and "
            "left out of training, as texts and as pairs"
        ),
    )
    if not combined.queries:
        raise MongarsError(
            f"datasets_dir: no usable retrieval records in {folder} (train.jsonl/val.jsonl); "
            "build the datasets with a retrieval source"
        )
    return combined
