"""Run the pipeline on this machine with ``kfp.local`` (SubprocessRunner, caching on).

Everything a run writes stays under ``<runs_root>/<run_id>/``: the KFP pipeline root with every
artifact, the local cache, and ``state.json``. Running the same run id again resumes: unchanged
stages are cache hits.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monGARS.mlops import stages
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.names import check_safe_name
from monGARS.mlops.shared_cache import CACHE_DIR_ENV
from monGARS.mlops.state import load_state, save_state, state_path

SHARED_CACHE_DIRNAME = "model-cache"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CACHE_HIT = re.compile(r"^Task (\S+) cache hit")
_FINISHED = re.compile(r"^Task '?([^' ]+)'? finished with status (\w+)")


@dataclass
class LocalRunResult:
    run_dir: Path
    state_file: Path
    outputs: dict[str, Any]
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0


class _TaskLog(logging.Filter):
    """Collects which tasks ran and which were served from the cache, from kfp.local's log.

    A filter on the root logger, not a handler: kfp.local swaps the root handlers while it runs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.executed: list[str] = []
        self.cached: list[str] = []
        self.errors: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self._note(record)
        return True

    def _note(self, record: logging.LogRecord) -> None:
        message = _ANSI.sub("", record.getMessage())
        if record.levelno >= logging.ERROR:
            self.errors.append(message.splitlines()[0] if message else record.levelname)
        if hit := _CACHE_HIT.match(message):
            self.cached.append(hit.group(1))
        elif (done := _FINISHED.match(message)) and done.group(2) == "SUCCESS":
            self.executed.append(done.group(1))


def _restore_env(name: str, previous: str | None, changed: bool) -> None:
    if not changed:
        return
    if previous is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = previous


def run_local(
    run_id: str,
    parameters: dict[str, Any],
    *,
    runs_root: str | Path = "runs",
    last_stage: str = "report",
    hf_token: str | None = None,
    runner: Any = None,
) -> LocalRunResult:
    """Validate, then run the pipeline up to ``last_stage`` locally; record ``state.json``.

    ``runner``: a kfp.local runner, default ``SubprocessRunner(use_venv=False)`` (this venv). The
    container tier passes a ``DockerRunner`` (tests/container), which gives the tasks only what it
    mounts and sets (no host variable reaches them, ``HF_TOKEN`` and ``MONGARS_CACHE_DIR``
    included): it mounts the run's shared cache folder where the cluster mounts the PVC.
    """
    check_safe_name("run_id", run_id)
    run_dir = Path(runs_root).resolve() / run_id
    load_state(run_dir)  # refuse a corrupted state before spending any time
    resolved = stages.resolve_local_parameters(parameters)
    stages.validate_parameters(resolved, last_stage)

    from kfp import local

    from pipelines.mongars_pipeline import build_pipeline

    pipeline_root = run_dir / "kfp"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=runner or local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        enable_caching=True,
        cache_root=str(run_dir / "cache"),
    )
    pipeline = build_pipeline(last_stage)
    task_log = _TaskLog()
    root_logger = logging.getLogger()
    root_logger.addFilter(task_log)
    # kfp.local logs cache hits at INFO outside its own logging context; let them through.
    previous_level = root_logger.level
    root_logger.setLevel(logging.INFO)
    previous_token = os.environ.get("HF_TOKEN")
    if hf_token:
        os.environ["HF_TOKEN"] = hf_token  # reaches the task subprocesses, never their arguments
    # The run's stand-in for the cluster's shared cache PVC: the base model is fetched into it once
    # and passed by reference, and sft/raft keep their checkpoints there (resume after a kill).
    previous_cache = os.environ.get(CACHE_DIR_ENV)
    shared_cache = run_dir / SHARED_CACHE_DIRNAME
    shared_cache.mkdir(parents=True, exist_ok=True)
    os.environ[CACHE_DIR_ENV] = str(shared_cache)
    started = time.monotonic()
    attempt: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "last_stage": last_stage,
        "parameters": resolved,
    }
    outputs: dict[str, Any] | None = None
    try:
        task = pipeline(**resolved)
        outputs = json.loads(task.output)
        attempt["status"] = "succeeded"
    except RuntimeError as error:
        attempt["status"] = "failed"
        first_line = _ANSI.sub("", str(error)).splitlines()[0]
        cause = f" ({task_log.errors[0]})" if task_log.errors else ""
        raise MongarsError(
            f"run {run_id}: {first_line}{cause}; the task log above shows the details "
            f"(artifacts under {pipeline_root})"
        ) from None
    finally:
        _restore_env("HF_TOKEN", previous_token, hf_token is not None and hf_token != "")
        _restore_env(CACHE_DIR_ENV, previous_cache, True)
        root_logger.removeFilter(task_log)
        root_logger.setLevel(previous_level)
        attempt["wall_seconds"] = round(time.monotonic() - started, 2)
        attempt["executed_tasks"] = task_log.executed
        attempt["cached_tasks"] = task_log.cached
        save_state(run_dir, run_id, attempt, outputs)
    return LocalRunResult(
        run_dir=run_dir,
        state_file=state_path(run_dir),
        outputs=outputs,
        executed=task_log.executed,
        cached=task_log.cached,
        wall_seconds=attempt["wall_seconds"],
    )
