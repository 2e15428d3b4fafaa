"""Resolve what a run reads from outside into revisions that enter the KFP cache keys.

The KFP backend's cache key holds the task's parameters (by value), its input artifact ids, its
command, image and PVC names, and the newest matching entry wins with no age limit
(kubeflow/pipelines ``backend/src/v2/cacheutils/cache.go: GenerateCacheKey``). A hub id without a
revision, a ``gs://`` prefix or a hub dataset therefore never reaches the key: a schedule with
fixed parameters would be served from the cache forever, whatever moved upstream.

The pipeline's first task (``resolve_sources``, never cached) resolves each outside input into a
revision and hands the revisions to the cached stages as *parameters*: an unchanged revision keeps
them cache hits (parameters compare by value), a moved one makes exactly its readers run again.

- a hub model or dataset: the commit its revision points at now (``HfApi``);
- a local file or folder, ``mongars://`` sample files: a sha256 of the bytes it reads;
- a ``gs://`` object or prefix: its objects' generations (a new upload is a new generation);
- the mined source tree (``code_roots``): the digest of the files the code miner reads;
- the tiny model: a digest of the code and corpus it is built from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from monGARS.mlops import storage
from monGARS.mlops.errors import MongarsError

DIGEST_LENGTH = 16


def _digest(parts: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:DIGEST_LENGTH]


def _file_blocks(path: Path) -> Iterable[bytes]:
    with path.open("rb") as handle:
        yield from iter(lambda: handle.read(1 << 20), b"")


def local_digest(path: Path, patterns: Iterable[str] | None = None) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative names and bytes, sorted).

    ``patterns`` limits a folder to the files a reader takes (a model folder's weights and
    configs); None takes every file.
    """
    if path.is_file():
        return _digest(_file_blocks(path))
    if not path.is_dir():
        raise MongarsError(f"{path}: does not exist; nothing to resolve")
    if patterns is None:
        files = sorted(p for p in path.rglob("*") if p.is_file())
    else:
        files = sorted({p for pattern in patterns for p in path.glob(pattern) if p.is_file()})

    def parts() -> Iterable[bytes]:
        for file in files:
            yield file.relative_to(path).as_posix().encode()
            yield from _file_blocks(file)

    return _digest(parts())


def gcs_generations(uri: str) -> str:
    """A digest of every object under a ``gs://`` URI: name, generation, size (no download).

    A rewritten object gets a new generation, so the digest moves whenever the data does.
    """
    fs, path = storage.filesystem_for(uri)
    try:
        found = fs.find(path, detail=True)
    except OSError as error:
        raise MongarsError(f"{uri}: cannot be listed ({error})") from None
    if not found:
        raise MongarsError(f"{uri}: no object there; check the bucket and prefix")
    entries = []
    for name, info in sorted(found.items()):
        identity = info.get("generation") or info.get("md5Hash") or info.get("crc32c")
        entries.append(f"{name}|{identity}|{info.get('size')}|{info.get('updated', '')}".encode())
    return _digest(entries)


def hub_revision(repo_id: str, revision: str | None, *, repo_type: str) -> str:
    """The commit a hub revision points at now; a pinned 40-hex commit is returned unchanged."""
    import os
    import re

    if revision and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    token = os.environ.get("HF_TOKEN") or None
    api = HfApi()
    try:
        if repo_type == "dataset":
            info = api.dataset_info(repo_id, revision=revision, token=token)
        else:
            info = api.model_info(repo_id, revision=revision, token=token)
    except OfflineModeIsEnabled:
        raise MongarsError(
            f"{repo_id}: cannot be resolved while downloads are off (HF_HUB_OFFLINE=1); go "
            "online, pin a commit (@<sha>) or give a local copy"
        ) from None
    except (HfHubHTTPError, ValueError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise MongarsError(f"{repo_id}: cannot be resolved on the hub ({reason})") from None
    return str(info.sha or revision or "main")


def base_model_revision(spec: str) -> str:
    """The revision of the base model ``spec`` names (what fetch_base_model will materialise)."""
    from monGARS.mlops.base_model import (
        MODEL_FILE_PATTERNS,
        check_base_model_spec,
        split_revision,
        tiny_model_digest,
    )

    kind = check_base_model_spec(spec)
    if kind == "tiny":
        return tiny_model_digest()
    if kind == "gcs":
        return gcs_generations(spec)
    if kind == "local":
        return local_digest(Path(spec).expanduser(), MODEL_FILE_PATTERNS)
    repo_id, revision = split_revision(spec)
    return hub_revision(repo_id, revision, repo_type="model")


def source_revision(uri: str) -> str:
    """The revision of one build_datasets source URI."""
    from monGARS.mlops.datasets.config import HUB_SCHEME, PACKAGE_SCHEME

    if uri.startswith(HUB_SCHEME):
        repo_id, _, revision = uri[len(HUB_SCHEME) :].partition("@")
        return hub_revision(repo_id, revision or None, repo_type="dataset")
    if uri.startswith(PACKAGE_SCHEME):
        from monGARS.mlops.datasets.readers import package_path

        return local_digest(package_path(uri))
    if storage.is_gcs(uri):
        return gcs_generations(uri)
    return local_digest(Path(uri).expanduser())


def code_root_revision(root: str) -> str:
    """The revision of a mined source tree: what the code miner reads of it."""
    if storage.is_gcs(root):
        return gcs_generations(root)
    path = Path(root).expanduser()
    if path.is_file():
        return local_digest(path)
    return source_tree_digest(path)


def source_tree_digest(path: Path) -> str:
    """A digest of the files the code miner reads under a local folder (paths and bytes)."""
    from monGARS.mlops.datasets.codetree import CodeRoot, iter_source_files

    if not path.is_dir():
        raise MongarsError(f"{path}: does not exist; give the source tree to mine")
    tree = CodeRoot(path.name, path, (path / "__init__.py").is_file())

    def parts() -> Iterable[bytes]:
        for source in iter_source_files(tree):
            yield source.relative.encode()
            yield source.path.read_bytes()

    return _digest(parts())


def dataset_revisions(parameters: Mapping[str, Any]) -> dict[str, str]:
    """``{source name: revision}`` for every build_datasets source, and ``code:<root>`` per mined
    tree, from the raw pipeline parameters (the same fold build_datasets uses)."""
    from monGARS.mlops.stages import datasets_config

    config = datasets_config(parameters)
    revisions = {spec.name: source_revision(spec.uri) for spec in config.source_specs()}
    for root in config.code_roots:
        revisions[f"code:{root}"] = code_root_revision(root)
    return revisions


def resolve_sources(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Every outside input of a run, resolved now: ``base_model_revision`` and
    ``dataset_revisions`` (what the pipeline feeds fetch_base_model and build_datasets)."""
    problems: list[str] = []
    result: dict[str, Any] = {"base_model_revision": "", "dataset_revisions": {}}
    try:
        result["base_model_revision"] = base_model_revision(str(parameters.get("base_model", "")))
    except MongarsError as error:
        problems.append(f"base_model: {error}")
    try:
        result["dataset_revisions"] = dataset_revisions(parameters)
    except MongarsError as error:
        problems.append(f"datasets: {error}")
    if problems:
        raise MongarsError("; ".join(problems))
    return result


def describe(result: Mapping[str, Any]) -> str:
    """One line for the task log."""
    return json.dumps(result, sort_keys=True)
