"""CheckpointStore around the checkpoints: the writer lease, the ranks, mirror ownership, and the
deletions it must survive.

In-process and cheap (no Trainer, no torch): tests/unit/test_checkpoint_lease.py runs two writers
as real processes; here each rule of the store is checked on its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.common import checkpoints
from monGARS.mlops.training.common.checkpoints import (
    MARKER,
    CheckpointStore,
    is_complete,
    mark_saved,
    prepare_for_ranks,
    write_marker,
)
from monGARS.mlops.training.common.distributed import World
from monGARS.mlops.training.common.lease import LEASE_FILE

# Short lease timings: a second writer refuses at once instead of waiting minutes.
LEASE = {"stale_after_s": 60.0, "heartbeat_s": 5.0, "wait_s": 0.0, "poll_s": 0.01}


def _checkpoint(folder: Path, step: int, *, marked: bool = True) -> Path:
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_model.safetensors").write_bytes(b"w" * (10 + step))
    if marked:
        write_marker(checkpoint)
    return checkpoint


# ---- the writer lease of a local folder ----------------------------------------------------


def test_prepare_holds_the_lease_so_a_second_writer_deletes_nothing(tmp_path: Path) -> None:
    first = CheckpointStore(str(tmp_path), "run", **LEASE)
    second = CheckpointStore(str(tmp_path), "run", **LEASE)
    try:
        assert first.prepare() is None
        assert first.lease is not None and first.lease.held, "prepare did not take the lease"
        half = _checkpoint(first.local_dir, 10, marked=False)  # first is saving step 10
        with pytest.raises(MongarsError, match=f"is being written by {first.lease.owner}"):
            second.prepare()
        assert half.is_dir(), "a second writer deleted the first one's half-written checkpoint"
    finally:
        first.close()
    assert not (first.local_dir / LEASE_FILE).exists(), "close did not give the lease back"
    try:
        assert second.prepare() is None  # free now: it takes over and cleans
        assert not half.exists()
    finally:
        second.close()


def test_a_mirrored_store_has_no_lease(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "bucket"), "run", mirror=True, **LEASE)
    try:
        assert store.lease is None
        assert store.prepare() is None
        store.check_lease()  # nothing to lose
        store.finish_checkpoint(_checkpoint(store.local_dir, 1, marked=False))
        assert not (store.local_dir / LEASE_FILE).exists()
        assert not (tmp_path / "bucket" / "run" / LEASE_FILE).exists()
    finally:
        store.close()


# ---- mirror folder ownership ---------------------------------------------------------------


def test_a_shared_mirror_folder_is_used_and_left_to_its_owner(tmp_path: Path) -> None:
    """Data-parallel ranks share one mirror folder (``mirror_dir``): the store must write there
    and must not delete it on close, since the caller owns it."""
    shared = tmp_path / "mirror"
    shared.mkdir()
    store = CheckpointStore(str(tmp_path / "bucket"), "run", mirror=True, mirror_dir=shared)
    assert store.local_dir == shared
    store.finish_checkpoint(_checkpoint(shared, 3, marked=False))
    store.close()
    assert shared.is_dir() and is_complete(shared / "checkpoint-3"), "close removed a shared mirror"


def test_closing_an_owned_mirror_twice_is_harmless(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "bucket"), "run", mirror=True)
    store.close()
    assert not store.local_dir.exists()
    store.close()  # e.g. an error path and a finally block both close


# ---- deletions that fail -------------------------------------------------------------------


@pytest.fixture
def undeletable(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Folder names whose removal fails (an I/O error, a stale NFS handle): add names to it."""
    names: set[str] = set()
    real_rmdir = os.rmdir

    def rmdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(os.fsdecode(path)).name in names:
            raise OSError(16, "Device or resource busy", os.fsdecode(path))
        real_rmdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "rmdir", rmdir)
    return names


def test_a_half_written_checkpoint_that_cannot_be_deleted_does_not_stop_the_resume(
    tmp_path: Path, undeletable: set[str]
) -> None:
    store = CheckpointStore(str(tmp_path), "run", **LEASE)
    try:
        _checkpoint(store.local_dir, 10)
        _checkpoint(store.local_dir, 20, marked=False)
        undeletable.add("checkpoint-20")
        assert store.prepare() == store.local_dir / "checkpoint-10"
    finally:
        store.close()


def test_a_partial_download_that_cannot_be_deleted_does_not_stop_the_resume(
    tmp_path: Path, undeletable: set[str]
) -> None:
    remote = tmp_path / "bucket"
    writer = CheckpointStore(str(remote), "run", mirror=True)
    for step in (10, 20):
        writer.finish_checkpoint(_checkpoint(writer.local_dir, step, marked=False))
    writer.close()
    (remote / "run" / "checkpoint-20" / "adapter_model.safetensors").unlink()  # marker only
    undeletable.add("checkpoint-20")
    reader = CheckpointStore(str(remote), "run", mirror=True)
    try:
        resume = reader.prepare()
        assert resume == reader.local_dir / "checkpoint-10" and is_complete(resume)
    finally:
        undeletable.clear()
        reader.close()


# ---- ranks ---------------------------------------------------------------------------------


class _TwoRanks:
    """torch.distributed's contract for two ranks, played in one process in rank order: every
    rank passes each barrier, and ``from_main`` gives every rank rank 0's value."""

    def __init__(self) -> None:
        self.broadcast: Any = None
        self.barriers: list[int] = []

    def barrier(self, world: World) -> None:
        self.barriers.append(world.rank)

    def from_main(self, world: World, value: Any) -> Any:
        if world.is_main:
            self.broadcast = value
        return self.broadcast


@pytest.fixture
def two_ranks(monkeypatch: pytest.MonkeyPatch) -> _TwoRanks:
    group = _TwoRanks()
    monkeypatch.setattr(checkpoints, "barrier", group.barrier)
    monkeypatch.setattr(checkpoints, "from_main", group.from_main)
    return group


def test_rank_zero_prepares_and_every_rank_resumes_from_its_choice(
    tmp_path: Path, two_ranks: _TwoRanks
) -> None:
    main = CheckpointStore(str(tmp_path), "run", **LEASE)
    other = CheckpointStore(str(tmp_path), "run", **LEASE)  # rank 1's view of the same folder
    try:
        _checkpoint(main.local_dir, 10)
        _checkpoint(main.local_dir, 20, marked=False)
        newest = main.local_dir / "checkpoint-10"
        assert prepare_for_ranks(main, World(2, 0, 0)) == newest
        assert not (main.local_dir / "checkpoint-20").exists(), "rank 0 did not clean"
        half = _checkpoint(main.local_dir, 11, marked=False)  # rank 0 starts saving again
        # Rank 1 must not prepare (it would take the lease rank 0 holds, or clean its work).
        assert prepare_for_ranks(other, World(2, 1, 1)) == newest
        assert half.is_dir() and other.lease is not None and not other.lease.held
        assert two_ranks.barriers == [0, 1]
    finally:
        main.close()
        other.close()


def test_ranks_agree_that_there_is_nothing_to_resume(tmp_path: Path, two_ranks: _TwoRanks) -> None:
    store = CheckpointStore(str(tmp_path), "run", **LEASE)
    try:
        assert prepare_for_ranks(store, World(2, 0, 0)) is None
        assert two_ranks.broadcast is None
    finally:
        store.close()


def test_a_single_process_prepares_itself(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path), "run", **LEASE)
    try:
        _checkpoint(store.local_dir, 4)
        assert prepare_for_ranks(store, World()) == store.local_dir / "checkpoint-4"
    finally:
        store.close()


def test_only_rank_zero_marks_a_saved_checkpoint_between_two_barriers(
    tmp_path: Path, two_ranks: _TwoRanks
) -> None:
    store = CheckpointStore(str(tmp_path), "run", **LEASE)
    try:
        store.prepare()
        saved = _checkpoint(store.local_dir, 6, marked=False)
        mark_saved(store, World(2, 1, 1), str(store.local_dir), 6)
        assert not (saved / MARKER).exists(), "rank 1 marked the checkpoint"
        mark_saved(store, World(2, 0, 0), str(store.local_dir), 6)
        assert is_complete(saved), "rank 0 did not mark the checkpoint"
        # A step the Trainer did not save: nothing is marked or created.
        mark_saved(store, World(2, 0, 0), str(store.local_dir), 7)
        assert not (store.local_dir / "checkpoint-7").exists()
        assert two_ranks.barriers == [1, 1, 0, 0, 0, 0]
    finally:
        store.close()
