"""Resolve the base model a run starts from: the tiny model, a folder, ``gs://`` or a hub id.

The pipeline runs this once in a cached ``fetch_base_model`` task. The weights land once on the
shared cache volume (monGARS.mlops.shared_cache) and every later stage receives a reference to
them, so no task copies the base model out of the artifact store.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from monGARS.mlops import storage
from monGARS.mlops.atomic import atomic_dir
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.shared_cache import (
    cache_dir,
    file_sizes,
    is_complete,
    mark_complete,
    models_dir,
    write_reference,
)
from monGARS.mlops.tiny_model import TINY_MODEL_NAME, build_tiny_model

# Files a model folder needs beyond its weights; anything else (optimizer states, .bin duplicates
# of safetensors, README images) is not copied.
MODEL_FILE_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]


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


def check_base_model_spec(spec: object) -> str:
    """The one check of ``base_model`` before anything runs: a usable spec, and a local folder
    that exists and holds a loadable checkpoint. Returns the kind (tiny, local, gcs, hub)."""
    if not isinstance(spec, str) or not spec.strip():
        raise MongarsError("base_model: give a hub id, a model folder, a gs:// URI or 'tiny'")
    kind = describe_spec(spec)
    if kind == "local":
        folder = Path(spec).expanduser()
        if not folder.exists():
            raise MongarsError(f"base_model: {spec} does not exist; give a model folder or hub id")
        check_model_folder(folder, "base_model")
    return kind


def _copy_model_files(source: Path, destination: Path) -> None:
    for pattern in MODEL_FILE_PATTERNS:
        for path in source.glob(pattern):
            shutil.copy2(path, destination / path.name)


def _materialise(spec: str, kind: str, destination: Path) -> dict[str, Any]:
    """Write the model named by ``spec`` into ``destination``; return its config.json."""
    if kind == "tiny":
        build_tiny_model(destination)
    elif kind == "local":
        check_base_model_spec(spec)
        _copy_model_files(Path(spec).expanduser(), destination)
    elif kind == "gcs":
        storage.download_tree(spec, destination)
    else:
        repo_id, revision = split_revision(spec)
        _download_from_hub(repo_id, revision, destination)
    return check_model_folder(destination, "base_model")


def split_revision(spec: str) -> tuple[str, str | None]:
    """``org/name@rev`` -> (``org/name``, ``rev``): a pinned hub revision (commit, tag, branch)."""
    repo_id, _, revision = spec.partition("@")
    return repo_id, revision or None


def _cache_key(spec: str, kind: str) -> tuple[str, str]:
    """The shared-cache folder name for a source: readable, and unique per source and revision.

    A hub id resolves its revision to a commit first, so ``main`` moving on gives a new entry; a
    local folder is keyed by its path and its files' sizes and times. Returns (key, revision): the
    hub commit, or a digest of what identifies the source.
    """
    if kind == "hub":
        repo_id, revision = split_revision(spec)
        commit = _resolve_hub_revision(repo_id, revision)
        identity = f"{repo_id}@{commit}"
    elif kind == "local":
        source = Path(spec).expanduser().resolve()
        stats = [
            (p.name, p.stat().st_size, p.stat().st_mtime_ns)
            for pattern in MODEL_FILE_PATTERNS
            for p in sorted(source.glob(pattern))
        ]
        identity = json.dumps([str(source), stats])
    elif kind == "tiny":
        # Built from code and the shipped corpus: changing either gives a new entry.
        identity = tiny_model_digest(full=True)
    else:
        identity = spec
    readable = re.sub(r"[^A-Za-z0-9._-]+", "--", split_revision(spec)[0].strip("/~."))[-60:]
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return f"{kind}-{readable or 'model'}-{digest}", commit if kind == "hub" else digest


def tiny_model_digest(*, full: bool = False) -> str:
    """A digest of what the tiny model is built from (its code and the shipped corpus)."""
    from monGARS.mlops import tiny_model

    sources = [Path(tiny_model.__file__), *sorted(tiny_model.sample_corpus_dir().rglob("*"))]
    digest = hashlib.sha256(
        b"".join(path.read_bytes() for path in sources if path.is_file())
    ).hexdigest()
    return digest if full else digest[:16]


def pin_revision(spec: str, revision: str) -> str:
    """``spec`` with a hub revision resolved by ``resolve_sources`` pinned (``org/name@<sha>``).

    Only hub ids take it: what is fetched is then exactly what was resolved, even if the branch
    moves in between. Other kinds are read as they are (their revision is a digest of them).
    """
    if not revision or describe_spec(spec) != "hub":
        return spec
    repo_id, _ = split_revision(spec)
    return f"{repo_id}@{revision}"


def fetch_base_model(spec: str, out_dir: str | Path) -> dict[str, Any]:
    """Materialise the base model named by ``spec``; return the artifact's metadata.

    With the shared cache volume mounted (cluster: ``model_cache_pvc``; local: the run's
    ``model-cache/``) the weights go there once per source and revision, and ``out_dir`` holds a
    reference to them. Without it the weights are copied into ``out_dir`` itself.
    """
    kind = check_base_model_spec(spec)
    cache = cache_dir(writable=True)
    if cache is None:
        with atomic_dir(out_dir) as scratch:
            config = _materialise(spec, kind, scratch)
        return _metadata(spec, kind, config, storage="artifact")
    key, revision = _cache_key(spec, kind)
    folder = models_dir(cache) / key
    reused = is_complete(folder)
    if not reused:
        with atomic_dir(folder) as scratch:
            _materialise(spec, kind, scratch)
            mark_complete(scratch)
    config = check_model_folder(folder, "base_model")
    metadata = _metadata(spec, kind, config, storage="model-cache")
    metadata["model_cache_key"] = folder.name
    metadata["revision"] = revision
    metadata["model_cache_reused"] = int(reused)
    metadata["model_bytes"] = sum(file_sizes(folder).values())
    with atomic_dir(out_dir) as scratch:
        write_reference(scratch, folder, metadata)
    return metadata


def _metadata(spec: str, kind: str, config: dict[str, Any], *, storage: str) -> dict[str, Any]:
    return {
        "base_model": spec,
        "source": kind,
        "storage": storage,
        "model_type": config.get("model_type", ""),
        "architectures": ",".join(config.get("architectures", [])),
    }


def _resolve_hub_revision(repo_id: str, revision: str | None) -> str:
    """The commit a hub revision points at now; a pinned commit is used as it is (no network)."""
    if revision and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        info = HfApi().model_info(
            repo_id, revision=revision, token=os.environ.get("HF_TOKEN") or None
        )
    except OfflineModeIsEnabled:
        raise MongarsError(
            f"base_model: {repo_id} cannot be resolved while downloads are off "
            "(HF_HUB_OFFLINE=1); go online or give a local folder"
        ) from None
    except (HfHubHTTPError, ValueError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise MongarsError(f"base_model: cannot resolve {repo_id} on the hub ({reason})") from None
    return str(info.sha or revision or "main")


def _download_from_hub(repo_id: str, revision: str | None, destination: Path) -> None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        snapshot_download(
            repo_id=repo_id,
            revision=revision,
            local_dir=destination,
            allow_patterns=MODEL_FILE_PATTERNS,
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
