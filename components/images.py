"""The one place that names the project's container images.

KFP's cache key sees the image reference, not the code inside it, so the tag follows the package
version: a code change ships as a new version, a new tag, and fresh cache keys. Registry and tag
can be overridden at compile time with ``MONGARS_IMAGE_REGISTRY`` and ``MONGARS_IMAGE_TAG``.
"""

from __future__ import annotations

import os
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DEFAULT_REGISTRY = "ghcr.io/mongars"
CPU_IMAGE_NAME = "mongars-runtime"
GPU_IMAGE_NAME = "mongars-train-cuda"


def package_version() -> str:
    """The project version: the source tree's pyproject when present, else the installed one."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        with pyproject.open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    try:
        return version("mongars-mlops")
    except PackageNotFoundError:
        return "0.0.0"


def image_registry() -> str:
    return os.environ.get("MONGARS_IMAGE_REGISTRY", DEFAULT_REGISTRY).rstrip("/")


def image_tag() -> str:
    return os.environ.get("MONGARS_IMAGE_TAG", package_version())


def image_ref(name: str) -> str:
    return f"{image_registry()}/{name}:{image_tag()}"


CPU_IMAGE = image_ref(CPU_IMAGE_NAME)
"""Datasets, export (llama-cpp-python built in), report: runs on CPU nodes."""

GPU_IMAGE = image_ref(GPU_IMAGE_NAME)
"""sft, llm2vec, raft: CUDA, Unsloth with its pins, bitsandbytes."""

ALL_IMAGES = {CPU_IMAGE_NAME: CPU_IMAGE, GPU_IMAGE_NAME: GPU_IMAGE}
