"""Checkpoint completeness at its edges: what a kill, a copy or a half upload can leave behind.

A checkpoint that is wrongly judged complete is resumed from (corrupt training state); one wrongly
judged incomplete is deleted (lost progress). Each case below is one of those two mistakes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from monGARS.mlops import storage
from monGARS.mlops.training.common.checkpoints import (
    MARKER,
    CheckpointStore,
    complete_checkpoints,
    hash_tree,
    is_complete,
    remove_incomplete,
    write_marker,
)


def _checkpoint(folder: Path, step: int, *, marked: bool = True) -> Path:
    checkpoint = folder / f"checkpoint-{step}"
    (checkpoint / "nested").mkdir(parents=True)
    (checkpoint / "adapter_model.safetensors").write_bytes(b"w" * (100 + step))
    (checkpoint / "nested" / "rng_state.pth").write_bytes(b"r" * 7)
    if marked:
        write_marker(checkpoint)
    return checkpoint


def test_marker_lists_every_file_but_itself_with_sizes(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path, 10)
    marker = json.loads((checkpoint / MARKER).read_text(encoding="utf-8"))
    assert marker == {
        "step": 10,
        "files": {"adapter_model.safetensors": 110, "nested/rng_state.pth": 7},
    }
    write_marker(checkpoint)  # marking again does not list the marker itself
    assert MARKER not in json.loads((checkpoint / MARKER).read_text(encoding="utf-8"))["files"]
    assert is_complete(checkpoint)


@pytest.mark.parametrize("new_step", [5, 50])
def test_a_copied_checkpoint_is_not_complete_under_another_step(
    tmp_path: Path, new_step: int
) -> None:
    """A folder copied with its marker (as the Trainer's rotation or a user might) is not the
    checkpoint its name says."""
    source = _checkpoint(tmp_path, 10)
    copy = tmp_path / f"checkpoint-{new_step}"
    shutil.copytree(source, copy)
    assert is_complete(source) and not is_complete(copy)


@pytest.mark.parametrize(
    "marker",
    [
        b"{not json",
        b"[]",
        b'{"step": 10}',
        b'{"step": 10, "files": {}}',
        b'{"step": 10, "files": ["adapter_model.safetensors"]}',
        b'{"files": {"adapter_model.safetensors": 110}}',
    ],
)
def test_a_broken_marker_is_not_complete(tmp_path: Path, marker: bytes) -> None:
    checkpoint = _checkpoint(tmp_path, 10)
    (checkpoint / MARKER).write_bytes(marker)
    assert not is_complete(checkpoint)


def test_a_marker_that_cannot_be_read_is_not_complete(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path, 10, marked=False)
    (checkpoint / MARKER).mkdir()  # OSError on read
    assert not is_complete(checkpoint)


@pytest.mark.parametrize("change", ["grown", "shrunk", "replaced_by_folder"])
def test_a_file_changed_after_marking_makes_it_incomplete(tmp_path: Path, change: str) -> None:
    checkpoint = _checkpoint(tmp_path, 10)
    target = checkpoint / "nested" / "rng_state.pth"
    if change == "grown":
        target.write_bytes(b"r" * 8)
    elif change == "shrunk":
        target.write_bytes(b"r" * 6)
    else:
        target.unlink()
        target.mkdir()
    assert not is_complete(checkpoint)


def test_only_checkpoint_folders_are_listed_or_removed(tmp_path: Path) -> None:
    assert complete_checkpoints(tmp_path / "missing") == []
    assert remove_incomplete(tmp_path / "missing") == []
    done = _checkpoint(tmp_path, 3)
    half = _checkpoint(tmp_path, 4, marked=False)
    (tmp_path / "checkpoint-9").write_text("a file, not a folder")
    (tmp_path / "checkpoint-x").mkdir()
    (tmp_path / "runs").mkdir()
    assert complete_checkpoints(tmp_path) == [done]
    assert remove_incomplete(tmp_path) == [half]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-3",
        "checkpoint-9",
        "checkpoint-x",
        "runs",
    ]


def test_hash_tree_separates_names_from_contents(tmp_path: Path) -> None:
    """``ab`` holding ``c`` and ``a`` holding ``bc`` are different trees."""
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    (first / "ab").write_bytes(b"c")
    (second / "a").write_bytes(b"bc")
    assert hash_tree(first) != hash_tree(second)
    (tmp_path / "three" / "sub").mkdir(parents=True)
    (tmp_path / "three" / "sub" / "x").write_bytes(b"1")
    (tmp_path / "four").mkdir()
    (tmp_path / "four" / "x").write_bytes(b"1")
    assert hash_tree(tmp_path / "three") != hash_tree(tmp_path / "four")


def test_local_store_creates_its_folder_and_says_where(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "a" / "b"), "sft-m-key")
    assert not store.mirror and store.location == f"{tmp_path}/a/b/sft-m-key"
    assert store.prepare() is None and store.local_dir.is_dir()
    store.close()
    assert store.local_dir.is_dir()  # a local store is the checkpoints: close keeps them
    assert CheckpointStore(str(tmp_path) + "/", "x").location == f"{tmp_path}/x"


class _RecordingFS:
    """The real filesystem, recording the order of uploads."""

    def __init__(self, fs: Any, puts: list[str]) -> None:
        self._fs = fs
        self._puts = puts

    def put(self, source: str, destination: str) -> Any:
        self._puts.append(destination)
        return self._fs.put(source, destination)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)


@pytest.fixture
def recorded_puts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    puts: list[str] = []
    real = storage.filesystem_for

    def filesystem_for(location: str) -> tuple[Any, str]:
        fs, path = real(location)
        return _RecordingFS(fs, puts), path

    monkeypatch.setattr(storage, "filesystem_for", filesystem_for)
    return puts


def test_mirror_uploads_each_checkpoint_marker_last_and_keeps_two(
    tmp_path: Path, recorded_puts: list[str]
) -> None:
    remote = tmp_path / "bucket"
    store = CheckpointStore(str(remote), "run", mirror=True)
    try:
        assert store.prepare() is None  # nothing remote yet
        for step in (1, 2, 3):
            store.finish_checkpoint(_checkpoint(store.local_dir, step, marked=False))
        uploads = [Path(p).relative_to(remote / "run").as_posix() for p in recorded_puts]
        for step in (1, 2, 3):
            mine = [u for u in uploads if u.startswith(f"checkpoint-{step}/")]
            assert len(mine) == 3 and mine[-1] == f"checkpoint-{step}/{MARKER}", mine
        assert sorted(p.name for p in (remote / "run").iterdir()) == [
            "checkpoint-2",
            "checkpoint-3",
        ]
    finally:
        store.close()
    assert not store.local_dir.exists()  # the mirror is dropped, the remote copy stays


def test_mirror_skips_a_remote_marker_whose_files_are_missing(tmp_path: Path) -> None:
    remote = tmp_path / "bucket"
    writer = CheckpointStore(str(remote), "run", mirror=True)
    for step in (10, 20):
        writer.finish_checkpoint(_checkpoint(writer.local_dir, step, marked=False))
    writer.close()
    (remote / "run" / "checkpoint-20" / "adapter_model.safetensors").unlink()
    reader = CheckpointStore(str(remote), "run", mirror=True)
    try:
        resume = reader.prepare()
        assert resume == reader.local_dir / "checkpoint-10" and is_complete(resume)
        assert not (reader.local_dir / "checkpoint-20").exists()
    finally:
        reader.close()


def test_mirror_of_an_empty_remote_has_nothing_to_resume(tmp_path: Path) -> None:
    (tmp_path / "bucket" / "run").mkdir(parents=True)
    (tmp_path / "bucket" / "run" / "checkpoint-5").mkdir()  # no marker: never uploaded fully
    store = CheckpointStore(str(tmp_path / "bucket"), "run", mirror=True)
    try:
        assert store.prepare() is None
    finally:
        store.close()


def test_gs_roots_are_mirrored_and_local_roots_are_not(tmp_path: Path) -> None:
    local = CheckpointStore(str(tmp_path), "run")
    remote = CheckpointStore("gs://bucket/prefix", "run")
    try:
        assert not local.mirror and local.local_dir == tmp_path / "run"
        assert remote.mirror and remote.location == "gs://bucket/prefix/run"
        assert remote.local_dir.is_dir() and remote.local_dir.name.startswith("run-")
    finally:
        remote.close()


def test_local_store_resumes_from_the_newest_of_several_complete(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path), "run")
    for step in (30, 10, 20):
        _checkpoint(store.local_dir, step)
    assert store.prepare() == store.local_dir / "checkpoint-30"


def test_pruning_counts_only_complete_remote_checkpoints(tmp_path: Path) -> None:
    """A half-uploaded remote folder (no marker) must not evict a complete one."""
    remote = tmp_path / "bucket"
    store = CheckpointStore(str(remote), "run", mirror=True)
    try:
        store.finish_checkpoint(_checkpoint(store.local_dir, 10, marked=False))
        half = remote / "run" / "checkpoint-15"
        half.mkdir(parents=True)
        (half / "adapter_model.safetensors").write_bytes(b"x")
        store.finish_checkpoint(_checkpoint(store.local_dir, 20, marked=False))
        complete = sorted(p.name for p in (remote / "run").iterdir() if (p / MARKER).is_file())
        assert complete == ["checkpoint-10", "checkpoint-20"]
    finally:
        store.close()


def test_mirror_downloads_deeply_nested_files(tmp_path: Path) -> None:
    remote = tmp_path / "bucket"
    writer = CheckpointStore(str(remote), "run", mirror=True)
    checkpoint = _checkpoint(writer.local_dir, 10, marked=False)
    (checkpoint / "global_step10" / "zero").mkdir(parents=True)
    (checkpoint / "global_step10" / "zero" / "states.pt").write_bytes(b"s" * 3)
    writer.finish_checkpoint(checkpoint)
    writer.close()
    reader = CheckpointStore(str(remote), "run", mirror=True)
    try:
        resume = reader.prepare()
        assert resume is not None and is_complete(resume)
        assert (resume / "global_step10" / "zero" / "states.pt").read_bytes() == b"sss"
    finally:
        reader.close()
