"""A run SIGKILLed at three points resumes from kfp.local's cache and the checkpoints it left,
and ends with the GGUF files of a run that was never interrupted.

Its own file so that `make test` runs it on one worker while test_local_pipeline.py runs the
uninterrupted run on another (tests/integration/local_runs.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from local_runs import FAST, RecordedRun, bundle_hashes

pytestmark = pytest.mark.integration


def _wait_for(folder: Path, pattern: str, process, limit_s: float = 900.0) -> bool:
    """Poll until a file matching ``pattern`` exists under ``folder``; False if the run ended."""
    import time

    deadline = time.monotonic() + limit_s
    while not any(folder.glob(pattern)):
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"no {pattern} appeared"
        time.sleep(0.2)
    return True


def test_killed_runs_resume_to_the_same_outputs(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SIGKILL the whole run at three points of progress — right after build_datasets published
    its output, after sft's first complete checkpoint, after the first llm2vec encoder — then the
    next run completes from the cache and its GGUF files equal the uninterrupted run's (asked for
    only now: on another worker it has been running alongside the kills)."""
    import os
    import signal
    import subprocess
    import sys

    from monGARS.deploy.local_run import run_local
    from monGARS.mlops.training.common.checkpoints import MARKER

    runs_root = tmp_path / "runs"
    runs_root.mkdir()
    config = tmp_path / "fast.json"
    config.write_text(json.dumps(FAST))
    command = [
        sys.executable, "-m", "monGARS.cli", "run", "--run-id", "killed",
        "--runs-root", str(runs_root), "--config", str(config),
    ]  # fmt: skip
    run_dir = runs_root / "killed"
    progress_points = (
        "kfp/*/build-datasets/datasets/modules.json",
        f"model-cache/checkpoints/sft-*/checkpoint-*/{MARKER}",
        "kfp/*/for-loop-1-iteration-*/llm2vec/encoder/*",
    )
    kills = 0
    for pattern in progress_points:
        process = subprocess.Popen(
            command,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[2],
        )
        if _wait_for(run_dir, pattern, process):
            os.killpg(process.pid, signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
    assert kills == len(progress_points), "a run ended before its kill point"

    resumed = run_local("killed", dict(FAST), runs_root=runs_root)
    assert "build-datasets" in resumed.cached, "a stage finished before the kills must be cached"
    uninterrupted: RecordedRun = request.getfixturevalue("uninterrupted_run")
    assert bundle_hashes(resumed.outputs) == bundle_hashes(uninterrupted.outputs)
