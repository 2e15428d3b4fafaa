"""The train/val split: a side per record from id and seed, and the rebalancing of an empty side.

Every test reads the files back: a record must be on exactly one side, the counts ``close()``
returns (what summary.json reports) must be the files' line counts, and a rebalancing move must
take the one record nearest the cut and leave every other line where it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monGARS.mlops.datasets.split import SplitWriter, dumps, split_score


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]


def _written(folder: Path) -> tuple[list[str], list[str]]:
    return _ids(folder / "train.jsonl"), _ids(folder / "val.jsonl")


def _check_partition(folder: Path, counts: dict[str, int], ids: list[str]) -> None:
    train, val = _written(folder)
    both = set(train) & set(val)
    assert not both, f"records on both sides of the split: {sorted(both)}"
    assert sorted(train + val) == sorted(ids), "a record was lost or duplicated by the split"
    assert counts == {"train": len(train), "val": len(val)}, (
        f"close() counts {counts} differ from the files (train {len(train)}, val {len(val)})"
    )
    assert not list(folder.glob(".*")), "a rewrite temp file was left behind"


def test_side_depends_on_score_and_cut(tmp_path: Path) -> None:
    writer = SplitWriter(tmp_path, val_split=0.5, seed=0)
    writer.write_line(dumps({"id": "below"}), 0.49)
    writer.write_line(dumps({"id": "at-cut"}), 0.5)  # the cut itself is train (score < cut = val)
    writer.write_line(dumps({"id": "above"}), 0.51)
    counts = writer.close()
    assert _written(tmp_path) == (["at-cut", "above"], ["below"])
    _check_partition(tmp_path, counts, ["below", "at-cut", "above"])


def test_score_is_a_stable_uniform_hash_of_seed_and_id() -> None:
    assert split_score("a", 1) == split_score("a", 1)
    assert split_score("a", 1) != split_score("a", 2) and split_score("a", 1) != split_score("b", 1)
    scores = [split_score(str(i), 7) for i in range(2000)]
    assert all(0 <= score < 1 for score in scores)
    assert 0.45 < sum(score < 0.5 for score in scores) / len(scores) < 0.55
    assert min(scores) < 0.01 and max(scores) > 0.99  # the full range, not a slice of it


def test_empty_val_takes_the_train_record_nearest_the_cut(tmp_path: Path) -> None:
    scores = {"r0": 0.9, "r1": 0.3, "r2": 0.7, "r3": 0.2, "r4": 0.8}
    writer = SplitWriter(tmp_path, val_split=0.1, seed=0)
    for record_id, score in scores.items():
        writer.write_line(dumps({"id": record_id}), score)
    counts = writer.close()
    _check_partition(tmp_path, counts, list(scores))
    train, val = _written(tmp_path)
    assert val == ["r3"], f"val should hold the lowest-score train record r3, holds {val}"
    assert train == ["r0", "r1", "r2", "r4"], "the other train lines must keep their order"


def test_empty_train_takes_the_val_record_farthest_from_the_cut(tmp_path: Path) -> None:
    scores = {"v0": 0.2, "v1": 0.6, "v2": 0.4, "v3": 0.1}
    writer = SplitWriter(tmp_path, val_split=0.9, seed=0)
    for record_id, score in scores.items():
        writer.write_line(dumps({"id": record_id}), score)
    counts = writer.close()
    _check_partition(tmp_path, counts, list(scores))
    train, val = _written(tmp_path)
    assert train == ["v1"], f"train should hold the highest-score val record v1, holds {train}"
    assert val == ["v0", "v2", "v3"], "the other val lines must keep their order"


@pytest.mark.parametrize("position", [0, 1, 2])
def test_the_moved_record_is_the_nearest_wherever_it_was_written(
    tmp_path: Path, position: int
) -> None:
    """The index kept for the move is the record's line number, whatever came before it."""
    others = [("a", 0.6), ("b", 0.7)]
    ordered = [*others[:position], ("nearest", 0.55), *others[position:]]
    writer = SplitWriter(tmp_path, val_split=0.5, seed=0)
    writer.write_line(dumps({"id": "in-val"}), 0.1)  # val has one record: no rebalancing
    for record_id, score in ordered:
        writer.write_line(dumps({"id": record_id}), score)
    counts = writer.close()
    assert counts == {"train": 3, "val": 1}
    _check_partition(tmp_path, counts, ["in-val", "a", "b", "nearest"])

    moved = SplitWriter(tmp_path / "empty-val", val_split=0.5, seed=0)
    for record_id, score in ordered:
        moved.write_line(dumps({"id": record_id}), score)
    counts = moved.close()
    _check_partition(tmp_path / "empty-val", counts, [r for r, _ in ordered])
    train, val = _written(tmp_path / "empty-val")
    assert val == ["nearest"] and train == [r for r, _ in ordered if r != "nearest"]


@pytest.mark.parametrize(
    ("val_split", "scores", "expected"),
    [
        (0.0, [0.5, 0.6], {"train": 2, "val": 0}),  # no validation asked for: nothing moves
        (0.3, [0.5], {"train": 1, "val": 0}),  # a single record stays where it is
        (0.3, [0.1], {"train": 0, "val": 1}),
        (0.3, [], {"train": 0, "val": 0}),
    ],
)
def test_no_rebalancing_without_a_validation_split_or_with_one_record(
    tmp_path: Path, val_split: float, scores: list[float], expected: dict[str, int]
) -> None:
    writer = SplitWriter(tmp_path, val_split=val_split, seed=0)
    for index, score in enumerate(scores):
        writer.write_line(dumps({"id": f"r{index}"}), score)
    counts = writer.close()
    assert counts == expected
    _check_partition(tmp_path, counts, [f"r{index}" for index in range(len(scores))])


def test_two_records_on_one_side_are_split_one_each(tmp_path: Path) -> None:
    writer = SplitWriter(tmp_path, val_split=0.2, seed=0)
    writer.write_line(dumps({"id": "x"}), 0.8)
    writer.write_line(dumps({"id": "y"}), 0.3)
    counts = writer.close()
    _check_partition(tmp_path, counts, ["x", "y"])
    assert _written(tmp_path) == (["x"], ["y"])


def test_write_serialises_sorted_and_readable(tmp_path: Path) -> None:
    writer = SplitWriter(tmp_path, val_split=0.0, seed=3)
    writer.write({"id": "é", "b": 1, "a": "ça"})
    writer.close()
    line = (tmp_path / "train.jsonl").read_text(encoding="utf-8")
    assert line == '{"a": "ça", "b": 1, "id": "é"}\n'


@pytest.mark.parametrize("position", [0, 1, 2])
def test_the_farthest_val_record_moves_wherever_it_was_written(
    tmp_path: Path, position: int
) -> None:
    others = [("a", 0.3), ("b", 0.2)]
    ordered = [*others[:position], ("farthest", 0.45), *others[position:]]
    writer = SplitWriter(tmp_path, val_split=0.5, seed=0)
    for record_id, score in ordered:
        writer.write_line(dumps({"id": record_id}), score)
    counts = writer.close()
    _check_partition(tmp_path, counts, [r for r, _ in ordered])
    train, val = _written(tmp_path)
    assert train == ["farthest"] and val == [r for r, _ in ordered if r != "farthest"]


def test_ties_at_the_cut_move_the_first_record_written(tmp_path: Path) -> None:
    """Equal scores (possible through ``write_line``): the first one written is the one moved."""
    for side, val_split, scores in (("val", 0.1, (0.4, 0.4)), ("train", 0.9, (0.6, 0.6))):
        folder = tmp_path / side
        writer = SplitWriter(folder, val_split=val_split, seed=0)
        for record_id, score in zip(("first", "second"), scores, strict=True):
            writer.write_line(dumps({"id": record_id}), score)
        counts = writer.close()
        _check_partition(folder, counts, ["first", "second"])
        moved = _written(folder)[0 if side == "train" else 1]
        assert moved == ["first"], f"the tie moved {moved} to {side}"


def test_writes_into_an_existing_or_nested_folder(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    nested = tmp_path / "a" / "b" / "c"
    for folder in (existing, nested):
        writer = SplitWriter(folder, val_split=0.5, seed=0)
        writer.write_line(dumps({"id": "x"}), 0.7)
        writer.write_line(dumps({"id": "y"}), 0.2)
        _check_partition(folder, writer.close(), ["x", "y"])
