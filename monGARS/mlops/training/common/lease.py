"""One writer per checkpoint folder: a lease file with owner and heartbeat, safe on NFS / RWX.

Identical runs (a CI run and the nightly schedule, or a resubmission while the first run is
alive) compute the same checkpoint key, so they meet in the same folder on the shared volume.
Without a lease each one deletes what it takes for the other's half-written checkpoints and the
Trainer's rotation removes the other's finished ones. The lease makes the folder single-writer:

* **Acquire** is one atomic ``link(2)`` of a fully written temporary file onto ``writer.lease``:
  it fails with EEXIST when the lease exists, on every NFS version (``O_EXCL`` is only atomic from
  NFSv3 on, and ``flock`` is advisory, per-node, or absent on many RWX drivers), and the lease is
  never seen half-written.
* **Heartbeat**: a daemon thread rewrites the lease (temporary file + ``rename(2)``, atomic) every
  ``heartbeat_s`` while it still names this owner; once it names another, the lease is *lost* and
  the training stops at its next step instead of writing alongside the new owner.
* **Waiting or refusing**: a second writer polls for ``wait_s`` and then refuses in one line that
  names the holder and its last heartbeat.
* **Stale leases** (a pod killed by SIGKILL, node loss or preemption) are taken over once their
  heartbeat is older than ``stale_after_s``, or at once when the holder provably is dead: same
  host name *and* same PID namespace (``/proc/self/ns/pid``), and its pid no longer exists (a
  local rerun after a kill; on Kubernetes a new pod has a new name, so only the heartbeat counts).
  The taker first wins a short-lived ``writer.lease.break`` file (same ``link`` rule), re-reads
  the lease to check it is still the same stale one, removes it, and then acquires as above, so
  two contenders never both take over.

Time is compared on the heartbeat written *inside* the file (the writer's clock), not on the file's
mtime (the NFS server's clock): nodes run NTP, and ``stale_after_s`` is minutes.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monGARS.mlops.errors import MongarsError

LEASE_FILE = "writer.lease"
BREAK_FILE = "writer.lease.break"
DEFAULT_STALE_AFTER_S = 180.0
DEFAULT_HEARTBEAT_S = 15.0
# A resubmission right after a pod was killed waits its lease out and resumes; a writer that is
# alive keeps heartbeating, so the second run refuses after this long instead of idling a GPU.
DEFAULT_WAIT_S = DEFAULT_STALE_AFTER_S + 2 * DEFAULT_HEARTBEAT_S


class LeaseLost(MongarsError):
    """Another writer took the lease over (ours looked stale): stop writing."""


def _owner_id() -> str:
    # The pod name is the hostname on Kubernetes; the pid and a random part tell retries apart.
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_namespace() -> str:
    """This process's PID namespace (``/proc/self/ns/pid``), '' where /proc does not say."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _holder_is_dead(record: dict[str, Any] | None) -> bool:
    """True only when the holder ran on this host, in this PID namespace, and its pid is gone."""
    if not record or not record.get("pid_namespace"):
        return False
    if record.get("host") != socket.gethostname() or record["pid_namespace"] != _pid_namespace():
        return False
    try:
        pid = int(record.get("pid") or 0)
    except (TypeError, ValueError):
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists but not ours to signal
        return False
    return False


class CheckpointLease:
    """An exclusive, heartbeated writer lease on ``folder``."""

    def __init__(
        self,
        folder: Path,
        *,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        wait_s: float = DEFAULT_WAIT_S,
        poll_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if heartbeat_s * 2 > stale_after_s:
            raise ValueError("heartbeat_s must be at most half of stale_after_s")
        self.folder = folder
        self.path = folder / LEASE_FILE
        self.owner = _owner_id()
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.clock = clock
        self.took_over: dict[str, Any] | None = None
        self._lost: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- file operations ------------------------------------------------------------------

    def _record(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_namespace": _pid_namespace(),
            "heartbeat": self.clock(),
        }

    def _temporary(self, record: dict[str, Any]) -> Path:
        temporary = self.folder / f".{LEASE_FILE}.{self.owner.replace(':', '-')}.tmp"
        temporary.write_text(json.dumps(record), encoding="utf-8")
        return temporary

    def _link_exclusive(self, target: Path, record: dict[str, Any]) -> bool:
        """Create ``target`` holding ``record`` atomically; False if it already exists."""
        temporary = self._temporary(record)
        try:
            os.link(temporary, target)
            return True
        except FileExistsError:
            return False
        finally:
            temporary.unlink(missing_ok=True)

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def _age(self, record: dict[str, Any] | None) -> float:
        if record is None:
            return float("inf")
        try:
            return self.clock() - float(record.get("heartbeat", 0))
        except (TypeError, ValueError):
            return float("inf")

    # -- acquire / release ----------------------------------------------------------------

    def acquire(self) -> None:
        """Hold the lease, waiting up to ``wait_s``; refuse in one line if another writer has it."""
        if self.held:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait_s
        while True:
            if self._link_exclusive(self.path, self._record()):
                self._start_heartbeat()
                return
            holder = self._read(self.path)
            if self._is_stale(holder) and self._break_stale(holder):
                self.took_over = holder
                continue
            if time.monotonic() >= deadline:
                raise MongarsError(self._refusal(holder))
            time.sleep(self.poll_s)

    @property
    def held(self) -> bool:
        """True while this object holds the lease (acquired, not released, not lost)."""
        return self._thread is not None and self._lost is None

    def _refusal(self, holder: dict[str, Any] | None) -> str:
        who = (holder or {}).get("owner", "an unknown writer")
        age = self._age(holder)
        seen = f"{age:.0f} s ago" if age != float("inf") else "never"
        return (
            f"checkpoints: {self.folder} is being written by {who} (last heartbeat {seen}); an "
            "identical run (same parameters and inputs) is training now. Wait for it to finish "
            "(this run then resumes from its checkpoints) or stop it; a dead writer's lease is "
            f"taken over {self.stale_after_s:.0f} s after its last heartbeat"
        )

    def _is_stale(self, record: dict[str, Any] | None) -> bool:
        return self._age(record) > self.stale_after_s or _holder_is_dead(record)

    def _break_stale(self, seen: dict[str, Any] | None) -> bool:
        """Remove the stale lease ``seen``, unless someone else changed or broke it first."""
        breaker = self.folder / BREAK_FILE
        if not self._link_exclusive(breaker, self._record()):
            # Another contender is breaking; a breaker left by a dead contender expires too.
            if self._age(self._read(breaker)) > self.stale_after_s:
                breaker.unlink(missing_ok=True)
            return False
        try:
            current = self._read(self.path)
            if current != seen or not self._is_stale(current):
                return False  # renewed or replaced since we looked: not stale any more
            self.path.unlink(missing_ok=True)
            return True
        finally:
            breaker.unlink(missing_ok=True)

    def release(self) -> None:
        """Stop heartbeating and remove the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 5)
            self._thread = None
        if self._lost is None and (self._read(self.path) or {}).get("owner") == self.owner:
            self.path.unlink(missing_ok=True)

    # -- heartbeat ------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="checkpoint-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if not self.renew():
                return

    def renew(self) -> bool:
        """Refresh the heartbeat if the lease is still ours; record the loss otherwise."""
        current = self._read(self.path)
        if (current or {}).get("owner") != self.owner:
            self._lost = current or {"owner": "nobody (the lease file was removed)"}
            return False
        temporary = self._temporary(self._record())
        os.replace(temporary, self.path)
        return True

    def check(self) -> None:
        """Raise :class:`LeaseLost` if another writer took the lease over (call before writing)."""
        if self._lost is not None:
            raise LeaseLost(
                f"checkpoints: {self.folder} was taken over by {self._lost.get('owner')} (this "
                f"writer's heartbeat looked older than {self.stale_after_s:.0f} s); stopping so "
                "that two writers never share the folder"
            )

    def __enter__(self) -> CheckpointLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
