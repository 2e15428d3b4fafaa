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
# OpenMP threads (llama.cpp, torch) sleep when idle instead of spinning: tests and the tasks they
# start share 2 cores, where spinning waits cost 50-100x per llama.cpp decode (local_run.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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


# `make test` spreads the suite over the cores by file (pytest-xdist, --dist loadfile: a file's
# module fixtures, such as a trained model or a pipeline run, are built once, on one worker).
# Files are handed out in collection order (--no-loadscope-reorder; xdist's default puts the files
# with the most tests first), so the few that run for minutes go first: started last, one of them
# would keep a worker busy long after the others have finished.
LONGEST_FIRST = (
    "integration/test_local_pipeline.py",
    "integration/test_local_pipeline_resume.py",
    "integration/test_runbook.py",
    "integration/test_champion_lifecycle.py",
    "integration/test_source_revisions.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    renamed = [name for name in LONGEST_FIRST if not (REPO_ROOT / "tests" / name).is_file()]
    if renamed:  # a renamed file would silently lose its place and start last again
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FIRST names missing files: {renamed}")
    tests = REPO_ROOT / "tests"

    def rank(item: pytest.Item) -> int:
        if not item.path.is_relative_to(tests):  # a test given from outside tests/
            return len(LONGEST_FIRST)
        path = item.path.relative_to(tests).as_posix()
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: every other test keeps its place


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    from tests.reliability.tally import count

    if report.when == "call":
        count(report.user_properties)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.reliability.tally import summary_line

    line = summary_line()
    if line:
        terminalreporter.write_line(line)
