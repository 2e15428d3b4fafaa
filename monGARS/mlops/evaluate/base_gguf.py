"""The base model as a GGUF file of the tuned model's default quant, converted once per revision.

"base → tuned" compares like with like: the base model goes through the same writer and the same
quantiser as the tuned module (``export/export.py``), unverified (it is the reference, not a
deliverable). The result is kept on the shared cache volume next to the base weights,

    evaluate/base-gguf/<model cache key>-<QUANT>/base-chat-<QUANT>.gguf   (+ .complete)

keyed by the ``model_cache_key`` that ``fetch_base_model`` derives from the source and its
revision (a hub commit), so the next run of the same base revision reuses it and a new revision
converts anew. Without a shared volume it is converted into a scratch folder for this task only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import atomic_dir
from monGARS.mlops.shared_cache import (
    REFERENCE_FILE,
    cache_dir,
    file_sizes,
    is_complete,
    mark_complete,
)

LOG = logging.getLogger(__name__)
BASE_MODULE = "base"


def base_key(base_artifact: str | Path, base_dir: Path) -> str:
    """The base model's identity: its cache key (source + revision), else a digest of its files."""
    reference = Path(base_artifact) / REFERENCE_FILE
    if reference.is_file():
        return str(json.loads(reference.read_text(encoding="utf-8"))["model_cache_key"])
    identity = json.dumps(file_sizes(base_dir), sort_keys=True)
    config = base_dir / "config.json"
    if config.is_file():
        identity += config.read_text(encoding="utf-8")
    return "folder-" + hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]


def _convert(
    base_dir: Path, target: Path, quant: str, export_values: dict[str, Any]
) -> dict[str, Any]:
    from monGARS.mlops.export.export import export_module

    values = {
        **export_values,
        "quant_types": [] if quant == "f16" else [quant],
        "export_method": "gguf",
        "verify": False,
    }
    return export_module(values, base_dir, None, None, BASE_MODULE, target)


def base_gguf(
    base_artifact: str | Path,
    base_dir: Path,
    quant: str,
    scratch: Path,
    export_values: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """(path of the base chat GGUF of type ``quant``, how it was obtained)."""
    from monGARS.mlops.export.export import gguf_file_name

    quant = quant.lower()
    name = gguf_file_name(BASE_MODULE, "chat", quant)
    key = base_key(base_artifact, base_dir)
    cache = cache_dir(writable=True)
    if cache is None:
        _convert(base_dir, scratch / "base-gguf", quant, dict(export_values or {}))
        return scratch / "base-gguf" / name, {"base_key": key, "base_gguf": "converted"}
    folder = cache / "evaluate" / "base-gguf" / f"{key}-{quant.upper()}"
    if is_complete(folder) and (folder / name).is_file():
        return folder / name, {"base_key": key, "base_gguf": "cached"}
    LOG.info("evaluate: converting the base model to %s once (%s)", quant.upper(), folder)
    with atomic_dir(folder) as stage:
        _convert(base_dir, stage / "export", quant, dict(export_values or {}))
        (stage / "export" / name).rename(stage / name)
        mark_complete(stage)
    return folder / name, {"base_key": key, "base_gguf": "converted"}
