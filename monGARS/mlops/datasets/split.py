"""Deterministic train/val split by a hash of (seed, record id), streamed to two JSONL files.

A record's side depends only on its id and the seed, never on what else is in the run, so adding
a source does not reshuffle the others. When the hash leaves validation empty (small sets), the
train record closest to the cut moves over, so every non-trivial set has a validation record.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import IO, Any


def split_score(record_id: str, seed: int) -> float:
    """A uniform number in [0, 1) from the id and seed; below ``val_split`` means validation."""
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def dumps(record: dict[str, Any]) -> str:
    """The one JSONL line format of the project (keys sorted, UTF-8 kept readable)."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True)


class SplitWriter:
    """Streams records into ``<folder>/train.jsonl`` and ``val.jsonl`` (inside an atomic dir)."""

    def __init__(self, folder: Path, val_split: float, seed: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.val_split = val_split
        self.seed = seed
        self.counts = {"train": 0, "val": 0}
        # Both files stay open while records stream in; close() closes them.
        self._handles: dict[str, IO[str]] = {
            side: open(folder / f"{side}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
            for side in ("train", "val")
        }
        # The train record nearest the cut (lowest score) and the val record farthest (highest).
        self._nearest_train: tuple[float, int] | None = None
        self._farthest_val: tuple[float, int] | None = None

    def write(self, record: dict[str, Any]) -> None:
        self.write_line(dumps(record), split_score(record["id"], self.seed))

    def write_line(self, line: str, score: float) -> None:
        """Write one record already serialised with ``dumps``, given its ``split_score``."""
        side = "val" if score < self.val_split else "train"
        index = self.counts[side]
        if side == "train" and (self._nearest_train is None or score < self._nearest_train[0]):
            self._nearest_train = (score, index)
        if side == "val" and (self._farthest_val is None or score > self._farthest_val[0]):
            self._farthest_val = (score, index)
        self._handles[side].write(line + "\n")
        self.counts[side] += 1

    def _move_line(self, source: str, target: str, index: int) -> None:
        """Move line ``index`` of one side's file to the end of the other side's file."""
        source_path = self.folder / f"{source}.jsonl"
        rewritten = self.folder / f".{source}.rewrite"
        moved = None
        with (
            open(source_path, encoding="utf-8") as reader,
            open(rewritten, "w", encoding="utf-8") as out,
        ):
            for position, line in enumerate(reader):
                if position == index:
                    moved = line
                else:
                    out.write(line)
        os.replace(rewritten, source_path)
        assert moved is not None
        with open(self.folder / f"{target}.jsonl", "a", encoding="utf-8") as handle:
            handle.write(moved)
        self.counts[source] -= 1
        self.counts[target] += 1

    def close(self) -> dict[str, int]:
        """Flush both files, rebalance an empty side when there is enough to split; the counts."""
        for handle in self._handles.values():
            handle.close()
        total = self.counts["train"] + self.counts["val"]
        if self.val_split > 0 and total >= 2:
            if self.counts["val"] == 0 and self._nearest_train is not None:
                self._move_line("train", "val", self._nearest_train[1])
            elif self.counts["train"] == 0 and self._farthest_val is not None:
                self._move_line("val", "train", self._farthest_val[1])
        return dict(self.counts)
