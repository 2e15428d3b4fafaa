"""The supervised contrastive phase: its loss on known cases, its pairs and batches, and the
evaluation split that keeps its queries out of training."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.llm2vec.data import holdout_key, load_retrieval_eval
from monGARS.mlops.training.llm2vec.simcse import info_nce
from monGARS.mlops.training.llm2vec.supervised import (
    ContrastiveBatch,
    ContrastiveRecord,
    contrastive_records,
    cycle_contrastive_batches,
    false_negative_mask,
    hard_negative_info_nce,
    load_contrastive_records,
)


def test_loss_on_orthogonal_vectors_matches_the_closed_form() -> None:
    # Queries equal their positives; every other candidate is orthogonal: logits 1/T vs 0.
    eye = torch.eye(6)
    queries, positives, negatives = eye[:2], eye[:2].clone(), eye[2:5]
    for temperature in (1.0, 0.5):
        loss = hard_negative_info_nce(queries, positives, negatives, temperature)
        # Row i: its target at 1/T, the other positive and the 3 negatives at 0.
        expected = math.log(1 + 4 * math.exp(-1 / temperature))
        assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_without_negatives_it_is_the_simcse_loss() -> None:
    torch.manual_seed(0)
    first, second = torch.randn(5, 8), torch.randn(5, 8)
    empty = torch.zeros(0, 8)
    expected = info_nce(first, second, 0.05).item()
    assert hard_negative_info_nce(first, second, empty, 0.05).item() == pytest.approx(expected)
    assert hard_negative_info_nce(first, second, None, 0.05).item() == pytest.approx(expected)


def test_a_hard_negative_close_to_the_query_raises_the_loss() -> None:
    torch.manual_seed(1)
    queries, positives = torch.randn(3, 8), torch.randn(3, 8)
    far = -queries  # opposite direction: cosine -1
    near = queries + 0.01 * torch.randn(3, 8)  # almost the query itself
    assert (
        hard_negative_info_nce(queries, positives, near, 0.1).item()
        > hard_negative_info_nce(queries, positives, far, 0.1).item()
    )


def test_the_mask_removes_false_negatives_from_the_softmax() -> None:
    torch.manual_seed(2)
    queries, positives = torch.randn(2, 8), torch.randn(2, 8)
    # Query 0's own positive repeated as the negative: masked, it must weigh nothing.
    repeated = positives[:1].clone()
    mask = torch.tensor([[False, False, True], [False, False, False]])
    masked = hard_negative_info_nce(queries, positives, repeated, 0.1, mask)
    row0 = torch.nn.functional.cross_entropy(
        torch.nn.functional.normalize(queries[:1], dim=-1)
        @ torch.nn.functional.normalize(positives, dim=-1).T
        / 0.1,
        torch.tensor([0]),
    )
    row1 = hard_negative_info_nce(queries[1:], positives[[1, 0]], repeated, 0.1)
    assert masked.item() == pytest.approx((row0.item() + row1.item()) / 2, rel=1e-5)
    unmasked = hard_negative_info_nce(queries, positives, repeated, 0.1)
    assert unmasked.item() != pytest.approx(masked.item())


def test_false_negative_mask_flags_other_copies_of_a_known_positive() -> None:
    batch = ContrastiveBatch(
        queries=["q0", "q1"],
        positives=["p0", "shared"],
        negatives=["shared", "n1"],
        known_positives=[frozenset({"p0", "shared"}), frozenset({"shared"})],
    )
    assert false_negative_mask(batch) == [
        [False, True, True, False],  # q0 knows "shared" is relevant: both copies are masked
        [False, False, True, False],  # q1's own target stays; its copy among negatives goes
    ]


def _record(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "query": f"Question {i} ?",
        "positives": [f"Réponse {i}."],
        "negatives": [f"Autre {i}."],
        **extra,
    }


def test_records_skip_what_the_evaluation_scores() -> None:
    records = [
        _record(0),
        _record(1),  # its query is evaluated: dropped
        _record(2, positives=["Réponse 2.", "Passage évalué."]),  # one positive evaluated
        _record(3, positives=["Passage évalué."]),  # its only positive evaluated: dropped
        _record(4, negatives=["Passage évalué.", "Réponse 4.", "Autre 4."]),
        {"query": "sans positif", "positives": [], "negatives": ["x"]},
        {"query": "  ", "positives": ["y"]},
    ]
    usable, dropped = contrastive_records(records, exclude=[" Question 1 ? ", "Passage évalué."])
    assert [r.query for r in usable] == ["Question 0 ?", "Question 2 ?", "Question 4 ?"]
    assert dropped == 2
    assert usable[1].positives == ("Réponse 2.",)
    # An evaluated passage and the record's own positive are never its negatives.
    assert usable[2].negatives == ("Autre 4.",)


def test_batches_are_seeded_cover_every_record_and_never_repeat_a_query() -> None:
    records = [
        ContrastiveRecord(f"q{i}", (f"p{i}a", f"p{i}b"), (f"n{i}a", f"n{i}b", f"n{i}c"))
        for i in range(10)
    ]
    batches = list(itertools.islice(cycle_contrastive_batches(records, 4, 2, seed=3), 60))
    again = list(itertools.islice(cycle_contrastive_batches(records, 4, 2, seed=3), 60))
    other = list(itertools.islice(cycle_contrastive_batches(records, 4, 2, seed=4), 60))
    assert batches == again and batches != other
    by_query = {r.query: r for r in records}
    for batch in batches:
        assert len(batch.queries) == len(set(batch.queries)) == 4
        assert len(batch.negatives) == 8  # 2 hard negatives per record
        for query, positive in zip(batch.queries, batch.positives, strict=True):
            assert positive in by_query[query].positives
    # One pass (2 full batches of 4 out of 10 records) never shows a record twice.
    assert len({q for b in batches[:2] for q in b.queries}) == 8
    # Over the passes every positive and negative is drawn.
    drawn = {t for b in batches for t in (*b.positives, *b.negatives)}
    assert all(t in drawn for r in records for t in (*r.positives, *r.negatives))
    # A batch bigger than the data uses all of it.
    whole = next(cycle_contrastive_batches(records[:3], 64, 0, seed=0))
    assert sorted(whole.queries) == ["q0", "q1", "q2"] and whole.negatives == []


def test_too_few_pairs_are_refused_in_one_line() -> None:
    with pytest.raises(MongarsError, match=r"^supervised: 1 usable .* at least 2[^\n]*$"):
        next(cycle_contrastive_batches([ContrastiveRecord("q", ("p",), ())], 4, 1, seed=0))


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_small_val_is_topped_up_from_train_and_those_pairs_are_not_trained_on(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "corpora" / "retrieval"
    train = [_record(i) for i in range(6)]
    _write(folder / "train.jsonl", train)
    _write(folder / "val.jsonl", [_record(100)])
    eval_set = load_retrieval_eval(tmp_path, min_queries=3)
    assert eval_set.split == "val+train" and len(eval_set.queries) == 3
    assert "2 train records" in eval_set.note and "as pairs" in eval_set.note
    expected = sorted(train, key=holdout_key)[:2]
    assert eval_set.queries == ["Question 100 ?", *(r["query"] for r in expected)]
    # The choice does not depend on the file order.
    _write(folder / "train.jsonl", train[::-1])
    assert load_retrieval_eval(tmp_path, min_queries=3).queries == eval_set.queries
    pairs, dropped = load_contrastive_records(
        tmp_path, exclude=[*eval_set.queries, *eval_set.passages]
    )
    assert dropped == 2 and len(pairs) == 4
    assert not {p.query for p in pairs} & set(eval_set.queries)
    # A val split big enough is used alone; train pairs are all trainable then.
    assert load_retrieval_eval(tmp_path, min_queries=1).split == "val"
