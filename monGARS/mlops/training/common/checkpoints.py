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

    def __init__(self, root: str, name: str, *, mirror: bool | None = None) -> None:
        self.root = root
        self.name = name
        self.location = f"{root.rstrip('/')}/{name}"
        self.mirror = storage.is_gcs(root) if mirror is None else mirror
        if self.mirror:
            self.local_dir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        else:
            self.local_dir = Path(root).expanduser() / name

    def prepare(self) -> Path | None:
        """Clean half-written checkpoints; return the newest complete one to resume from."""
        if self.mirror:
            return self._download_latest()
        self.local_dir.mkdir(parents=True, exist_ok=True)
        remove_incomplete(self.local_dir)
        complete = complete_checkpoints(self.local_dir)
        return complete[-1] if complete else None

    def finish_checkpoint(self, checkpoint: Path) -> None:
        """Called once the Trainer has written ``checkpoint``: mark it, upload it when mirrored."""
        write_marker(checkpoint)
        if self.mirror:
            self._upload(checkpoint)

    def close(self) -> None:
        """Drop the local mirror (the remote copy stays)."""
        if self.mirror:
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


def checkpoint_callback(store: CheckpointStore) -> Any:
    """A TrainerCallback that marks (and uploads) each checkpoint once the Trainer has saved it."""
    from transformers import TrainerCallback

    class _MarkCheckpoint(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                store.finish_checkpoint(checkpoint)
            return control

    return _MarkCheckpoint()
