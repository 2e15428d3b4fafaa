"""Resumable training: checkpoints at a stable place keyed by the task's inputs, written atomically.

A preempted pod reruns the same task with the same inputs; it must find the checkpoints of the run
it replaces. The location is ``<checkpoint_root>/sft-<module>-<key>`` where ``key`` hashes the base
model's files, the dataset files, the module and the resolved config, so a different input never
resumes a foreign run and the per-run output path plays no part.

The Trainer writes ``checkpoint-N`` folders file by file. A checkpoint counts only once its marker
(``mongars-checkpoint.json``, listing every file and its size) exists, and the marker is written
after the Trainer has finished the folder; a folder without a valid marker is half-written and is
deleted before training resumes. For ``gs://`` roots the Trainer writes to a local mirror and each
finished checkpoint is uploaded file by file, its marker last.

A folder on a volume has one writer at a time (``lease.CheckpointLease``): identical runs share
the key, and without it each would delete the other's half-written checkpoints in ``prepare`` and
the Trainer's rotation would prune the other's finished ones. The second writer waits or refuses
in one line; a dead writer's lease is taken over once its heartbeat is stale, and only then are its
half-written checkpoints removed. A mirrored ``gs://`` store has no lease (object stores offer no
``link``); its rotation deletes only complete checkpoints older than the newest two.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from monGARS.mlops import storage
from monGARS.mlops.atomic import sha256_file, write_json
from monGARS.mlops.training.common.distributed import World, barrier, from_main
from monGARS.mlops.training.common.lease import CheckpointLease

MARKER = "mongars-checkpoint.json"
KEEP = 2  # complete checkpoints kept; the newest may be mid-write when a kill lands
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def hash_tree(folder: Path) -> str:
    """sha256 over the relative paths and contents of every file under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        digest.update(sha256_file(path).encode("ascii") + b"\n")
    return digest.hexdigest()


def adapter_digest(folder: Path) -> str:
    """:func:`hash_tree` of a PEFT adapter folder, blind to what PEFT writes in hash order.

    PEFT stores ``target_modules`` as a set, so ``adapter_config.json`` lists them in an order
    that changes from process to process: hashed as bytes, the same adapter would give a new
    checkpoint key in every run, and the next stage of a re-submitted run would never resume.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        if path.name == "adapter_config.json":
            config = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(config.get("target_modules"), list):
                config["target_modules"] = sorted(config["target_modules"])
            canonical = json.dumps(config, sort_keys=True).encode("utf-8")
            digest.update(hashlib.sha256(canonical).hexdigest().encode("ascii") + b"\n")
        else:
            digest.update(sha256_file(path).encode("ascii") + b"\n")
    return digest.hexdigest()


def run_key(inputs: dict[str, Any]) -> str:
    """A short stable hash of the task's inputs (canonical JSON)."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]


def _step(name: str) -> int | None:
    match = _CHECKPOINT.match(name)
    return int(match.group(1)) if match else None


def write_marker(checkpoint: Path) -> None:
    """Declare a finished checkpoint folder complete (atomic write of its file list)."""
    files = {
        p.relative_to(checkpoint).as_posix(): p.stat().st_size
        for p in sorted(checkpoint.rglob("*"))
        if p.is_file() and p.name != MARKER
    }
    write_json(checkpoint / MARKER, {"step": _step(checkpoint.name), "files": files})


def is_complete(checkpoint: Path) -> bool:
    """True when the marker exists and every file it lists is there with its size."""
    try:
        marker = json.loads((checkpoint / MARKER).read_text(encoding="utf-8"))
        files = marker["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if marker.get("step") != _step(checkpoint.name) or not isinstance(files, dict) or not files:
        return False
    for relative, size in files.items():
        path = checkpoint / relative
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def complete_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    if not folder.is_dir():
        return []
    found = [(s, p) for p in folder.iterdir() if (s := _step(p.name)) is not None and p.is_dir()]
    return [path for _step_number, path in sorted(found) if is_complete(path)]


def remove_incomplete(folder: Path) -> list[Path]:
    """Delete half-written checkpoint folders; return what was removed."""
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if _step(path.name) is not None and path.is_dir() and not is_complete(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class CheckpointStore:
    """One task's checkpoint folder: a local folder, or a local mirror of a ``gs://`` prefix."""

    def __init__(
        self,
        root: str,
        name: str,
        *,
        mirror: bool | None = None,
        mirror_dir: Path | None = None,
        **lease: Any,
    ) -> None:
        """``mirror_dir``: where a ``gs://`` root is mirrored (data-parallel ranks share one);
        owned by the caller, so ``close`` leaves it. Default: a fresh temporary folder.
        ``lease``: :class:`CheckpointLease` settings for a local folder (taken by ``prepare``,
        which only rank 0 calls)."""
        self.root = root
        self.name = name
        self.location = f"{root.rstrip('/')}/{name}"
        self.mirror = storage.is_gcs(root) if mirror is None else mirror
        self._owns_mirror = mirror_dir is None
        self.lease: CheckpointLease | None = None
        if self.mirror:
            self.local_dir = mirror_dir or Path(tempfile.mkdtemp(prefix=f"{name}-"))
        else:
            self.local_dir = Path(root).expanduser() / name
            self.lease = CheckpointLease(self.local_dir, **lease)

    def prepare(self) -> Path | None:
        """Take the folder's writer lease, clean half-written checkpoints (only a dead writer's
        can be left once the lease is ours) and return the newest complete one to resume from."""
        if self.mirror:
            return self._download_latest()
        self.local_dir.mkdir(parents=True, exist_ok=True)
        if self.lease is not None:
            self.lease.acquire()
        remove_incomplete(self.local_dir)
        complete = complete_checkpoints(self.local_dir)
        return complete[-1] if complete else None

    def check_lease(self) -> None:
        """Stop (``LeaseLost``) if another writer has taken the folder over."""
        if self.lease is not None:
            self.lease.check()

    def finish_checkpoint(self, checkpoint: Path) -> None:
        """Called once the Trainer has written ``checkpoint``: mark it, upload it when mirrored."""
        self.check_lease()
        write_marker(checkpoint)
        if self.mirror:
            self._upload(checkpoint)

    def close(self) -> None:
        """Release the lease; drop the local mirror (the remote copy stays)."""
        if self.lease is not None:
            self.lease.release()
        if self.mirror and self._owns_mirror:
            shutil.rmtree(self.local_dir, ignore_errors=True)

    # -- remote side -----------------------------------------------------------------------

    def _remote(self) -> tuple[Any, str]:
        fs, path = storage.filesystem_for(self.location)
        return fs, path.rstrip("/")

    def _remote_complete_steps(self) -> list[int]:
        fs, base = self._remote()
        if not fs.exists(base):
            return []
        steps = []
        for entry in fs.ls(base, detail=False):
            step = _step(Path(entry.rstrip("/")).name)
            if step is not None and fs.exists(f"{base}/checkpoint-{step}/{MARKER}"):
                steps.append(step)
        return sorted(steps)

    def _download_latest(self) -> Path | None:
        fs, base = self._remote()
        for step in reversed(self._remote_complete_steps()):
            target = self.local_dir / f"checkpoint-{step}"
            shutil.rmtree(target, ignore_errors=True)
            remote = f"{base}/checkpoint-{step}"
            for path in fs.find(remote):
                local = target / path[len(remote) + 1 :]
                local.parent.mkdir(parents=True, exist_ok=True)
                fs.get(path, str(local))
            if is_complete(target):
                return target
            shutil.rmtree(target, ignore_errors=True)  # marker without its files: skip it
        return None

    def _upload(self, checkpoint: Path) -> None:
        fs, base = self._remote()
        remote = f"{base}/{checkpoint.name}"
        files = sorted(p for p in checkpoint.rglob("*") if p.is_file() and p.name != MARKER)
        for path in [*files, checkpoint / MARKER]:  # the marker goes last
            destination = f"{remote}/{path.relative_to(checkpoint).as_posix()}"
            fs.makedirs(str(Path(destination).parent), exist_ok=True)
            fs.put(str(path), destination)
        for step in self._remote_complete_steps()[:-KEEP]:
            fs.rm(f"{base}/checkpoint-{step}", recursive=True)


def mark_saved(store: CheckpointStore, world: World, output_dir: str, step: int) -> None:
    """What every rank does once the Trainer has saved step ``step`` under ``output_dir``.

    All ranks wait until each has written its part of the folder (the Trainer saves per-rank RNG
    states), then rank 0 alone writes the marker and uploads, and the others wait for it, so a
    checkpoint is declared complete once, and only when complete. A step the Trainer did not
    save (no folder) marks nothing.
    """
    barrier(world)
    checkpoint = Path(output_dir) / f"checkpoint-{step}"
    if world.is_main and checkpoint.is_dir():
        store.finish_checkpoint(checkpoint)
    barrier(world)


def checkpoint_callback(store: CheckpointStore, world: World) -> Any:
    """A TrainerCallback that marks (and uploads) each checkpoint once the Trainer has saved it
    (:func:`mark_saved`, on every rank), and stops a writer that lost its lease."""
    from transformers import TrainerCallback

    class _MarkCheckpoint(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            store.check_lease()  # a writer that lost its lease stops before the next step
            return control

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            mark_saved(store, world, args.output_dir, state.global_step)
            return control

    return _MarkCheckpoint()


def prepare_for_ranks(store: CheckpointStore, world: World) -> Path | None:
    """``store.prepare()`` on rank 0 (it deletes half-written folders, downloads a mirror); every
    rank gets the same checkpoint to resume from."""
    resume = store.prepare() if world.is_main else None
    barrier(world)
    found = from_main(world, str(resume) if resume else None)
    return Path(found) if found else None
