"""Resolve the base model a run starts from: the tiny model, a folder, ``gs://`` or a hub id.

The pipeline runs this once in a cached ``fetch_base_model`` task, so every later stage receives
the same local copy as a ``dsl.Model`` artifact and never re-downloads it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from monGARS.mlops import storage
from monGARS.mlops.atomic import atomic_dir
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.tiny_model import TINY_MODEL_NAME, build_tiny_model

# Files a model folder needs beyond its weights; anything else (optimizer states, .bin duplicates
# of safetensors, README images) is not copied.
# Where the cluster mounts the shared model-cache PVC (pipelines/placement.py); hub downloads go
# through it when it is there, so a model is fetched from the hub once per cluster.
MODEL_CACHE_DIR = Path("/var/cache/mongars")

_MODEL_FILE_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]


def describe_spec(spec: str) -> str:
    """Which kind of source ``spec`` names: tiny, local, gcs or hub."""
    if spec == TINY_MODEL_NAME:
        return "tiny"
    if storage.is_gcs(spec):
        return "gcs"
    if spec.startswith(("/", "./", "../", "~")) or Path(spec).expanduser().exists():
        return "local"
    return "hub"


def check_model_folder(folder: Path, label: str) -> dict[str, Any]:
    """Refuse a folder that is not a loadable causal-LM checkpoint, with a one-line reason."""
    if not folder.is_dir():
        raise MongarsError(f"{label}: {folder} is not a folder; give a model folder or a hub id")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise MongarsError(
            f"{label}: {folder} has no config.json; is it a Hugging Face model folder?"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MongarsError(f"{label}: {config_path} is not valid JSON ({error})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise MongarsError(f"{label}: {config_path} has no model_type; the config is broken")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise MongarsError(f"{label}: {folder} has no weights (*.safetensors)")
    return config


def _copy_model_files(source: Path, destination: Path) -> None:
    for pattern in _MODEL_FILE_PATTERNS:
        for path in source.glob(pattern):
            shutil.copy2(path, destination / path.name)


def fetch_base_model(spec: str, out_dir: str | Path) -> dict[str, Any]:
    """Materialise the base model named by ``spec`` into ``out_dir``; return artifact metadata."""
    kind = describe_spec(spec)
    with atomic_dir(out_dir) as scratch:
        if kind == "tiny":
            build_tiny_model(scratch)
        elif kind == "local":
            source = Path(spec).expanduser()
            if not source.exists():
                raise MongarsError(
                    f"base_model: {spec} does not exist; give a model folder or hub id"
                )
            check_model_folder(source, "base_model")
            _copy_model_files(source, scratch)
        elif kind == "gcs":
            storage.download_tree(spec, scratch)
        else:
            _download_from_hub(spec, scratch)
        config = check_model_folder(scratch, "base_model")
    return {
        "base_model": spec,
        "source": kind,
        "model_type": config.get("model_type", ""),
        "architectures": ",".join(config.get("architectures", [])),
    }


def _download_from_hub(repo_id: str, destination: Path) -> None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    cache_dir = MODEL_CACHE_DIR / "huggingface" if MODEL_CACHE_DIR.is_dir() else None
    try:
        snapshot_download(
            repo_id=repo_id,
            cache_dir=cache_dir,
            local_dir=destination,
            allow_patterns=_MODEL_FILE_PATTERNS,
            token=os.environ.get("HF_TOKEN") or None,
        )
    except LocalEntryNotFoundError:
        raise MongarsError(
            f"base_model: {repo_id} is not in the local Hugging Face cache and downloads are off "
            "(HF_HUB_OFFLINE=1); go online or give a local folder"
        ) from None
    except (HfHubHTTPError, ValueError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise MongarsError(f"base_model: cannot download {repo_id} ({reason})") from None
    shutil.rmtree(destination / ".cache", ignore_errors=True)
