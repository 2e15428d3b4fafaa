"""Two writers on one checkpoint folder (issue 22, point 11), as real processes.

Identical runs share a checkpoint key, hence a folder on the shared volume. Each writer here is a
separate Python process that does what the Trainer does through ``CheckpointStore``: ``prepare``
(lease, clean half-written checkpoints, find the resume point), write ``checkpoint-N`` file by file,
mark it, and rotate old ones. Timeouts are shortened; the rules are the production ones.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monGARS.mlops.training.common.checkpoints import MARKER, CheckpointStore, is_complete
from monGARS.mlops.training.common.lease import LEASE_FILE, CheckpointLease, LeaseLost

REPO = Path(__file__).resolve().parents[2]
NAME = "sft-m-0123456789abcdef0123"

WRITER = r"""
import json, shutil, sys, time
from pathlib import Path
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.common.checkpoints import CheckpointStore, complete_checkpoints

root, steps, pause, wait_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
store = CheckpointStore(root, sys.argv[5], stale_after_s=1.0, heartbeat_s=0.2, wait_s=wait_s,
                        poll_s=0.05)
try:
    resume = store.prepare()
except MongarsError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
start = int(resume.name.split("-")[1]) if resume else 0
print(json.dumps({"event": "acquired", "resume": start}), flush=True)
try:
    for step in range(start + 1, start + steps + 1):
        checkpoint = store.local_dir / f"checkpoint-{step}"
        checkpoint.mkdir()
        (checkpoint / "optimizer.pt").write_bytes(b"o" * 100)
        print(json.dumps({"event": "writing", "step": step}), flush=True)
        time.sleep(pause)  # mid-save: files there, no marker yet
        (checkpoint / "adapter_model.safetensors").write_bytes(b"w" * step)
        store.finish_checkpoint(checkpoint)
        for old in complete_checkpoints(store.local_dir)[:-2]:  # the Trainer's rotation
            shutil.rmtree(old)
finally:
    store.close()
print(json.dumps({"event": "done"}), flush=True)
"""


def _writer(root: Path, steps: int, pause: float, wait_s: float) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(steps), str(pause), str(wait_s), NAME],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _until(process: subprocess.Popen[str], event: str, step: int | None = None) -> dict:
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"writer ended before {event}: {process.stderr.read()[-2000:]}")
        record = json.loads(line)
        if record["event"] == event and (step is None or record.get("step") == step):
            return record
    raise AssertionError(f"no {event} within 60 s")


def test_a_second_writer_refuses_and_deletes_nothing(tmp_path: Path) -> None:
    """Without the lease the second writer's ``prepare`` deletes the first one's half-written
    checkpoint (and its rotation the finished ones): this fails if the lease is removed."""
    first = _writer(tmp_path, steps=3, pause=1.5, wait_s=0)
    _until(first, "writing", step=2)  # checkpoint-1 complete, checkpoint-2 half-written
    folder = tmp_path / NAME
    in_progress = folder / "checkpoint-2"
    assert in_progress.is_dir() and not (in_progress / MARKER).exists()

    second = _writer(tmp_path, steps=3, pause=0, wait_s=0.5)
    _out, err = second.communicate(timeout=60)
    assert second.returncode == 2
    assert len(err.strip().splitlines()) == 1, err
    assert f"is being written by {socket.gethostname()}:{first.pid}:" in err
    assert "identical run" in err and "last heartbeat" in err
    assert in_progress.is_dir(), "the second writer deleted the first one's checkpoint"
    assert is_complete(folder / "checkpoint-1")

    _until(first, "done")
    assert first.wait(timeout=30) == 0
    assert [p.name for p in sorted(folder.glob("checkpoint-*"))] == ["checkpoint-2", "checkpoint-3"]
    assert all(is_complete(p) for p in folder.glob("checkpoint-*"))
    assert not (folder / LEASE_FILE).exists()


def test_a_waiting_writer_resumes_where_the_first_one_ended(tmp_path: Path) -> None:
    first = _writer(tmp_path, steps=2, pause=0.5, wait_s=0)
    _until(first, "acquired")
    second = _writer(tmp_path, steps=1, pause=0, wait_s=30)  # waits while heartbeats go on
    assert _until(second, "acquired")["resume"] == 2
    assert first.wait(timeout=30) == 0
    _until(second, "done")
    assert second.wait(timeout=30) == 0
    assert is_complete(tmp_path / NAME / "checkpoint-3")


def test_a_live_writer_keeps_its_lease_past_the_stale_timeout(tmp_path: Path) -> None:
    """Heartbeats every 0.2 s keep a 1 s lease fresh: a writer waiting 2.5 s never takes it."""
    first = _writer(tmp_path, steps=1, pause=4, wait_s=0)
    _until(first, "writing", step=1)
    second = _writer(tmp_path, steps=1, pause=0, wait_s=2.5)
    _out, err = second.communicate(timeout=60)
    assert second.returncode == 2 and "is being written by" in err
    _until(first, "done")
    assert first.wait(timeout=30) == 0


def test_a_killed_writer_is_taken_over_and_its_half_checkpoint_removed(tmp_path: Path) -> None:
    first = _writer(tmp_path, steps=3, pause=30, wait_s=0)
    _until(first, "writing", step=1)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    folder = tmp_path / NAME
    assert (folder / LEASE_FILE).is_file()  # SIGKILL leaves the lease behind
    second = _writer(tmp_path, steps=1, pause=0, wait_s=0)  # same host, pid gone: at once
    assert _until(second, "acquired")["resume"] == 0
    _until(second, "done")
    assert second.wait(timeout=30) == 0
    assert [p.name for p in folder.glob("checkpoint-*")] == ["checkpoint-1"]
    assert is_complete(folder / "checkpoint-1")


def _foreign_lease(folder: Path, age_s: float) -> None:
    """A lease left by a pod on another node (another host name: its pid says nothing here)."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"owner": "mongars-sft-pod-7:1:abc", "host": "mongars-sft-pod-7", "pid": 1}
    record["pid_namespace"] = "pid:[4026531836]"
    record["heartbeat"] = time.time() - age_s
    (folder / LEASE_FILE).write_text(json.dumps(record))


def test_a_dead_pods_lease_is_taken_over_after_the_stale_timeout(tmp_path: Path) -> None:
    folder = tmp_path / NAME
    _foreign_lease(folder, age_s=0)
    lease = CheckpointLease(folder, stale_after_s=1.0, heartbeat_s=0.2, wait_s=0.3, poll_s=0.05)
    with pytest.raises(Exception, match="is being written by mongars-sft-pod-7:1:abc"):
        lease.acquire()  # fresh heartbeat: refused
    waited = CheckpointLease(folder, stale_after_s=1.0, heartbeat_s=0.2, wait_s=5, poll_s=0.05)
    started = time.monotonic()
    waited.acquire()  # no heartbeat arrives: stale after 1 s, taken over
    try:
        assert 0.5 < time.monotonic() - started < 5
        assert waited.took_over is not None and waited.took_over["host"] == "mongars-sft-pod-7"
        assert json.loads((folder / LEASE_FILE).read_text())["owner"] == waited.owner
    finally:
        waited.release()
    assert not (folder / LEASE_FILE).exists()


def test_a_writer_whose_lease_was_taken_stops_before_writing(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path), NAME, stale_after_s=1.0, heartbeat_s=0.2, wait_s=0)
    store.prepare()
    try:
        _foreign_lease(store.local_dir, age_s=0)  # another writer judged us stale and took over
        assert store.lease is not None and not store.lease.renew()
        checkpoint = store.local_dir / "checkpoint-1"
        checkpoint.mkdir()
        (checkpoint / "optimizer.pt").write_bytes(b"o")
        with pytest.raises(LeaseLost, match="taken over by mongars-sft-pod-7"):
            store.finish_checkpoint(checkpoint)
        assert not (checkpoint / MARKER).exists()
    finally:
        store.close()
    assert (store.local_dir / LEASE_FILE).is_file()  # the new owner's lease is left alone
