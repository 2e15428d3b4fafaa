"""Hand a stage's output folder to a task outside its condition, through the shared cache volume.

RAFT is optional, and with ``raft=false`` nothing may hold a GPU node. So the GPU raft task sits
under a ``dsl.If`` and merge_adapter stays outside it. The SDK lets a task outside a condition read
a task inside it only through ``dsl.OneOf``, and the KFP backend resolves that correctly for
*parameters* from 2.14 on, but for *artifacts* only from 2.17: before, the driver takes the last
artifact selector whatever branch ran (kubeflow/pipelines 2.15.0
``backend/src/v2/driver/resolve.go: GetProducerTask``; parameters go through
``ValueFromOneof`` and pick the branch whose task is COMPLETE or CACHED). So raft copies its
adapter folder (megabytes) onto the shared volume it already mounts, and passes merge_adapter a
string *parameter* naming that copy: the folder's content digest and file sizes. The parameter
enters merge's cache key by value, so a new adapter gives a new merge, and merge refuses a copy
that is missing or differs in one line.

Layout on the volume: ``handoff/<label>-<digest>/`` (+ a ``.complete`` marker), next to
``models/`` and ``checkpoints/`` (monGARS.mlops.shared_cache).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from monGARS.mlops.atomic import atomic_dir
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.names import to_identifier
from monGARS.mlops.shared_cache import (
    CACHE_DIR_ENV,
    CLUSTER_CACHE_DIR,
    cache_dir,
    file_sizes,
    is_complete,
    mark_complete,
)
from monGARS.mlops.sources import local_digest

HANDOFF_DIR = "handoff"


def publish_to_cache(folder: Path, label: str) -> str:
    """Copy ``folder`` onto the shared volume (once per content); return its reference (JSON)."""
    cache = cache_dir(writable=True)
    if cache is None:
        raise MongarsError(
            f"{label}: the shared cache volume is not mounted or not writable (looked at "
            f"${CACHE_DIR_ENV} and {CLUSTER_CACHE_DIR}); mount model_cache_pvc"
        )
    key = f"{to_identifier(label)}-{local_digest(folder)}"
    target = cache / HANDOFF_DIR / key
    if not is_complete(target):
        with atomic_dir(target) as scratch:
            shutil.copytree(folder, scratch, dirs_exist_ok=True)
            mark_complete(scratch)
    return json.dumps({"key": key, "files": file_sizes(target)}, sort_keys=True)


def resolve_from_cache(reference: str, label: str) -> Path:
    """The folder a ``publish_to_cache`` reference names, checked against its recorded files."""
    try:
        parsed = json.loads(reference)
        key, expected = str(parsed["key"]), dict(parsed["files"])
    except (ValueError, KeyError, TypeError):
        raise MongarsError(f"{label}: {reference[:80]!r} is not a handoff reference") from None
    cache = cache_dir(writable=False)
    if cache is None:
        raise MongarsError(
            f"{label}: it is kept on the shared cache volume, which this task does not mount "
            f"(looked at ${CACHE_DIR_ENV} and {CLUSTER_CACHE_DIR}); mount model_cache_pvc"
        )
    folder = cache / HANDOFF_DIR / key
    if not is_complete(folder) or file_sizes(folder) != expected:
        raise MongarsError(
            f"{label}: {folder} is missing or differs from what its producer recorded; run again "
            "with caching off for that stage to write it anew"
        )
    return folder
