"""The one place that names the project's container images.

The KFP backend's cache key holds the image *string*, not the image: a tag pushed again with new
code would serve stale cache hits. So the tag is immutable by construction —
``<package version>-<digest>``, where the digest hashes every file that goes into the images
(the build context allowed by .dockerignore, and the Dockerfiles). A code change gives a new tag,
hence fresh cache keys; the same tree always gives the same tag, so the committed YAML is
reproducible. The compiled YAML itself is not hashed (it names the tag).

Registry and tag can be overridden at compile time with ``MONGARS_IMAGE_REGISTRY`` and
``MONGARS_IMAGE_TAG`` (for instance a digest-pinned tag a release process produced).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DEFAULT_REGISTRY = "ghcr.io/mongars"
CPU_IMAGE_NAME = "mongars-runtime"
GPU_IMAGE_NAME = "mongars-train-cuda"
SOURCE_ROOT = Path(__file__).resolve().parents[1]
# What the images are built from (keep in step with .dockerignore and images/Dockerfile.*).
IMAGE_SOURCES = ("pyproject.toml", "monGARS", "components", "pipelines", "requirements", "images")
_NOT_IN_IMAGES = frozenset({"pipelines/mongars.yaml"})
# What images/build.sh writes there per build (a proxy CA bundle, the CPU torch wheel), git-ignored:
# build inputs pinned elsewhere, not image sources (and hashing a 190 MB wheel on import is slow).
_BUILD_INPUTS = "images/build-extra/"
_BUILD_INPUTS_KEPT = frozenset({"images/build-extra/README.md", "images/build-extra/.gitignore"})
_SKIPPED_SUFFIXES = frozenset({".pyc", ".gguf", ".safetensors"})
DIGEST_LENGTH = 12


def _is_source_tree(root: Path) -> bool:
    return (root / "pyproject.toml").is_file() and (root / "monGARS").is_dir()


def package_version(root: Path = SOURCE_ROOT) -> str:
    """The project version (``monGARS/version.py``), read as text: components import only stdlib
    and kfp at top level, and the tag must be known when this module is imported."""
    source = root / "monGARS" / "version.py"
    if source.is_file():
        match = re.search(r'^__version__ = "([^"]+)"', source.read_text("utf-8"), re.MULTILINE)
        if match:
            return match.group(1)
    try:
        return version("mongars-mlops")
    except PackageNotFoundError:
        return "0.0.0"


def _image_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for name in IMAGE_SOURCES:
        top = root / name
        candidates = [top] if top.is_file() else sorted(top.rglob("*"))
        for path in candidates:
            relative = path.relative_to(root).as_posix()
            if (
                path.is_file()
                and relative not in _NOT_IN_IMAGES
                and (not relative.startswith(_BUILD_INPUTS) or relative in _BUILD_INPUTS_KEPT)
                and "__pycache__" not in path.parts
                and path.suffix not in _SKIPPED_SUFFIXES
            ):
                files.append(path)
    return files


def source_digest(root: Path = SOURCE_ROOT) -> str | None:
    """Hash of every file the images are built from; None outside a source tree."""
    if not _is_source_tree(root):
        return None
    digest = hashlib.sha256()
    for path in _image_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:DIGEST_LENGTH]


def uncommitted_image_sources(root: Path = SOURCE_ROOT) -> list[str]:
    """Image source files git reports as changed or new (empty outside a git checkout)."""
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain", "--", *IMAGE_SOURCES],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    changed = [line[3:] for line in result.stdout.splitlines() if line[3:]]
    return [path for path in changed if path not in _NOT_IN_IMAGES]


def image_registry() -> str:
    return os.environ.get("MONGARS_IMAGE_REGISTRY", DEFAULT_REGISTRY).rstrip("/")


def image_tag() -> str:
    """``MONGARS_IMAGE_TAG``, else ``<version>-<source digest>`` (the bare version if no tree)."""
    override = os.environ.get("MONGARS_IMAGE_TAG")
    if override:
        return override
    digest = source_digest()
    return f"{package_version()}-{digest}" if digest else package_version()


def image_ref(name: str) -> str:
    return f"{image_registry()}/{name}:{image_tag()}"


CPU_IMAGE = image_ref(CPU_IMAGE_NAME)
"""Datasets, export (llama-cpp-python built in), report: runs on CPU nodes."""

GPU_IMAGE = image_ref(GPU_IMAGE_NAME)
"""sft, llm2vec, raft: CUDA, Unsloth with its pins, bitsandbytes."""

ALL_IMAGES = {CPU_IMAGE_NAME: CPU_IMAGE, GPU_IMAGE_NAME: GPU_IMAGE}
