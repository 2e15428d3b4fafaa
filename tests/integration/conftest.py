"""Integration fixtures: the shared uninterrupted pipeline run (tests/integration/local_runs.py)."""

from __future__ import annotations

import pytest
from local_runs import RecordedRun, shared_uninterrupted_run


@pytest.fixture(scope="session")
def uninterrupted_run(tmp_path_factory: pytest.TempPathFactory) -> RecordedRun:
    return shared_uninterrupted_run(tmp_path_factory)
