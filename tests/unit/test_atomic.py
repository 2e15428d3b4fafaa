"""Atomic writes: a killed write is never taken as finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monGARS.mlops.atomic import atomic_dir, is_partial, write_json, write_jsonl


def test_failed_block_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(target) as scratch:
        (scratch / "half.txt").write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_replaces_existing_folder_whole(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_dir(target) as scratch:
        (scratch / "old.txt").write_text("old")
    with atomic_dir(target) as scratch:
        (scratch / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_json_and_jsonl_are_deterministic(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    write_json(tmp_path / "b.json", {"a": [1, 2], "b": 1})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert write_jsonl(tmp_path / "r.jsonl", [{"z": "é", "a": 1}]) == 1
    assert (tmp_path / "r.jsonl").read_text(encoding="utf-8") == '{"a": 1, "z": "é"}\n'


_SLOW_WRITER = """
import sys, time
from monGARS.mlops.atomic import atomic_dir
with atomic_dir(sys.argv[1]) as scratch:
    for i in range(1000):
        (scratch / f"part-{i}.bin").write_bytes(b"x" * 1000)
        print(i, flush=True)
        time.sleep(0.01)
"""


def test_killed_writer_leaves_only_a_partial_sibling(tmp_path: Path) -> None:
    target = tmp_path / "model"
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(target)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for _ in range(5):
        process.stdout.readline()
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    time.sleep(0.05)
    assert not target.exists(), "a killed write must not look finished"
    leftovers = list(tmp_path.iterdir())
    assert leftovers and all(is_partial(path) for path in leftovers)
