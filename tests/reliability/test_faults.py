"""Storage faults: a full disk gives one clear line in the task log and a failed run, never a
half-written artifact that a later run would take as finished."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.tally import record

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FILE_SIZE_LIMIT = 48 * 1024  # state.json and the task's small files fit; the datasets do not


def _full_disk() -> None:
    """In the child: writes past the limit fail with EFBIG, as on a full disk (no signal)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def test_full_disk_fails_the_run_with_a_clear_line(tmp_path: Path) -> None:
    held = False
    try:
        result = subprocess.run(
            [sys.executable, "-m", "monGARS.cli", "run", "--run-id", "full",
             "--runs-root", str(tmp_path / "runs"), "--build-datasets"],
            cwd=REPO,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=_full_disk,
        )  # fmt: skip
        output = result.stdout + result.stderr
        assert result.returncode == 2, output[-3000:]
        assert "error: build_datasets: cannot write" in output, output[-3000:]
        assert "File too large" in output
        last = [line for line in result.stderr.splitlines() if line.strip()][-1]
        assert last.startswith("error: run full:") and "build-datasets" in last, last
        datasets = list((tmp_path / "runs" / "full" / "kfp").rglob("build-datasets/datasets"))
        assert not datasets, "a failed write must not leave a datasets folder that looks finished"
        held = True
    finally:
        record("fault: full disk while writing datasets", held)
