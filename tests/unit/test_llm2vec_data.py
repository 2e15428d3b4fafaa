"""llm2vec training text and eval set: texts the evaluation scores are never trained on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monGARS.mlops.training.llm2vec.data import load_retrieval_eval, load_training_texts

SOURCES = ["instruction", "retrieval"]


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )


def _retrieval(i: int, shared_negative: str = "") -> dict[str, Any]:
    return {
        "id": f"r{i}",
        "query": f"Question numéro {i} ?",
        "positives": [f"Réponse détaillée numéro {i}."],
        "negatives": [shared_negative or f"Passage sans rapport numéro {i}."],
    }


def _datasets(root: Path, train: int, val: int, shared_negative: str = "") -> Path:
    corpora = root / "corpora"
    _write(
        corpora / "retrieval" / "train.jsonl",
        [_retrieval(i, shared_negative) for i in range(train)],
    )
    _write(
        corpora / "retrieval" / "val.jsonl",
        [_retrieval(i, shared_negative) for i in range(100, 100 + val)],
    )
    _write(
        corpora / "instruction" / "train.jsonl",
        [{"instruction": "Explique LoRA.", "output": "Des matrices de rang faible."}],
    )
    return root


def _eval_texts(eval_set: Any) -> set[str]:
    return {*eval_set.queries, *eval_set.passages}


def test_held_out_val_is_used_and_train_texts_stay(tmp_path: Path) -> None:
    root = _datasets(tmp_path, train=4, val=3)
    eval_set = load_retrieval_eval(root, min_queries=3)
    assert eval_set.split == "val" and eval_set.note == "" and len(eval_set.queries) == 3
    corpus = load_training_texts(
        root, None, SOURCES, seed=0, exclude=[*eval_set.queries, *eval_set.passages]
    )
    assert corpus.excluded == 0
    assert corpus.counts == {"instruction": 2, "retrieval": 12}  # 4 records x 3 texts
    assert not set(corpus.texts) & _eval_texts(eval_set)


def test_small_val_is_topped_up_from_train_and_those_texts_are_not_trained_on(
    tmp_path: Path,
) -> None:
    root = _datasets(tmp_path, train=4, val=1)
    eval_set = load_retrieval_eval(root, min_queries=3)
    assert eval_set.split == "val+train" and len(eval_set.queries) == 3
    assert "2 train records" in eval_set.note and "left out of training" in eval_set.note
    everything = load_training_texts(root, None, SOURCES, seed=0)
    corpus = load_training_texts(
        root, None, SOURCES, seed=0, exclude=[*eval_set.queries, *eval_set.passages]
    )
    # The two train records the evaluation borrowed give no training text (3 texts each).
    assert corpus.excluded == 6 and corpus.counts["retrieval"] == 6
    assert not set(corpus.texts) & _eval_texts(eval_set)
    assert set(corpus.texts) == set(everything.texts) - _eval_texts(eval_set)


def test_a_val_passage_repeated_in_train_is_not_trained_on(tmp_path: Path) -> None:
    shared = "La Seine traverse Paris."
    root = _datasets(tmp_path, train=3, val=2, shared_negative=shared)
    eval_set = load_retrieval_eval(root, min_queries=2)
    assert eval_set.split == "val" and shared in eval_set.passages
    corpus = load_training_texts(
        root, None, SOURCES, seed=0, exclude=[f"  {shared}\n", *eval_set.queries]
    )
    assert shared not in corpus.texts and corpus.excluded == 1
    assert corpus.counts["retrieval"] == 6  # 3 queries + 3 positives; the shared negative is out
