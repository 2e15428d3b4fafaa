"""The shared cache volume: base models fetched once, checkpoints that outlive a pod.

On a cluster the pipeline mounts the ``model_cache_pvc`` PersistentVolumeClaim at
``/var/cache/mongars`` on the tasks that read the base model or write checkpoints; a local run
points ``MONGARS_CACHE_DIR`` at a folder of the run. Both give the same layout:

    models/<key>/          one materialised base model per source and revision (+ .complete)
    checkpoints/           sft and raft checkpoint stores (a retried or re-submitted task resumes)

The base model then travels between tasks *by reference*: ``fetch_base_model`` writes the weights
here once and its ``dsl.Model`` artifact holds only ``reference.json`` (source, revision, file
sizes), so no pod downloads a multi-GB copy from the artifact store.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import write_json
from monGARS.mlops.errors import MongarsError

CACHE_DIR_ENV = "MONGARS_CACHE_DIR"
CLUSTER_CACHE_DIR = Path("/var/cache/mongars")
"""Where the pipeline mounts ``model_cache_pvc`` (pipelines/placement.py)."""
REFERENCE_FILE = "reference.json"
COMPLETE_MARKER = ".complete"


def cache_dir(*, writable: bool) -> Path | None:
    """The shared cache volume (``$MONGARS_CACHE_DIR``, else the PVC mount), or None if absent.

    A volume that is there but that this user cannot write is an error, never a quiet fallback
    (weights copied into the artifact, checkpoints off): on a cluster it is an NFS root owned by
    root, and the run would otherwise lose resumability without a word. The images do not create
    the mount point themselves, so on a cluster it exists only where the PVC is mounted.
    """
    raw = os.environ.get(CACHE_DIR_ENV, "")
    folder = Path(raw).expanduser() if raw else CLUSTER_CACHE_DIR
    if not folder.is_dir():
        return None
    if writable:
        check_writable(folder)
    return folder


def check_writable(folder: Path) -> None:
    """Create and remove a file in ``folder`` (what the stage will do), or fail in one line.

    A real write, not ``os.access``: NFS servers with root squash or ID mapping decide on the
    server side, which ``access(2)`` on the client does not always see.
    """
    try:
        handle, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise MongarsError(
            f"model_cache_pvc: the shared cache volume at {folder} is not writable by uid "
            f"{os.getuid()} gid {os.getgid()} ({error.strerror or error}); make it group-writable "
            "once (docs/cluster.md, 'The cache volume must be writable by UID 1000') or use a "
            "storage class that honours fsGroup"
        ) from None


def default_checkpoint_root() -> str:
    """``checkpoints/`` on the shared volume; '' (no resume) when no volume is mounted."""
    folder = cache_dir(writable=True)
    return str(folder / "checkpoints") if folder else ""


def models_dir(cache: Path) -> Path:
    return cache / "models"


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def file_sizes(folder: Path) -> dict[str, int]:
    """Sizes of the files a model folder holds (the marker excluded), by relative name."""
    return {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != COMPLETE_MARKER
    }


def mark_complete(folder: Path) -> None:
    write_json(folder / COMPLETE_MARKER, {"files": file_sizes(folder)})


def write_reference(artifact_dir: Path, folder: Path, details: dict[str, Any]) -> None:
    """What a ``dsl.Model`` artifact holds when the weights stay in ``folder`` on the volume."""
    write_json(
        artifact_dir / REFERENCE_FILE,
        {**details, "model_cache_key": folder.name, "files": file_sizes(folder)},
    )


def resolve_model_dir(artifact_dir: str | Path, label: str = "base_model") -> Path:
    """The folder holding a model's files: the artifact itself, or the cache entry it names.

    A reference is checked against the files it recorded (names and sizes), so a cache entry that
    was deleted or half-replaced is refused in one line instead of failing deep inside training.
    """
    artifact = Path(artifact_dir)
    reference_path = artifact / REFERENCE_FILE
    if not reference_path.is_file():
        return artifact
    reference = json.loads(reference_path.read_text(encoding="utf-8"))
    key = str(reference["model_cache_key"])
    cache = cache_dir(writable=False)
    if cache is None:
        raise MongarsError(
            f"{label}: the model is kept on the shared cache volume, which this task does not "
            f"mount (looked at ${CACHE_DIR_ENV} and {CLUSTER_CACHE_DIR}); mount model_cache_pvc"
        )
    folder = models_dir(cache) / key
    expected = reference.get("files") or {}
    if not is_complete(folder) or file_sizes(folder) != expected:
        raise MongarsError(
            f"{label}: {folder} is missing or differs from what fetch_base_model recorded; "
            "run again with caching off for fetch_base_model to materialise it anew"
        )
    return folder
