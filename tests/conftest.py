"""Shared fixtures: offline environment, the tiny model and the sample corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]

# gcs_emulator / gcs_bucket: a local GCS emulator for gs:// tests (tests/gcs_emulator.py).
pytest_plugins = ["gcs_emulator"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded tiny Llama model, built once per test session (read-only by convention)."""
    from monGARS.mlops.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture(scope="session")
def sample_corpus_dir() -> Path:
    from monGARS.mlops.tiny_model import sample_corpus_dir

    return sample_corpus_dir()
