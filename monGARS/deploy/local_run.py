"""Run the pipeline on this machine with ``kfp.local`` (SubprocessRunner, caching on).

Everything a run writes stays under ``<runs_root>/<run_id>/``: the KFP pipeline root with every
artifact, the local cache, and ``state.json``. Running the same run id again resumes: unchanged
stages are cache hits.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monGARS.deploy.local_console import RunConsole
from monGARS.mlops import stages
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.names import check_safe_name
from monGARS.mlops.shared_cache import CACHE_DIR_ENV
from monGARS.mlops.state import load_state, save_state, state_path

SHARED_CACHE_DIRNAME = "model-cache"
CHAMPIONS_DIRNAME = "champions"
RUN_ID_ENV = "MONGARS_RUN_ID"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class LocalRunResult:
    run_dir: Path
    state_file: Path
    outputs: dict[str, Any]
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    logs_dir: Path | None = None
    tasks: list[Any] = field(default_factory=list)
    warnings_hidden: int = 0


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
    carried_over: Mapping[str, Any] | None = None,
) -> LocalRunResult:
    """Validate, then run the pipeline up to ``last_stage`` locally; record ``state.json``.

    ``parameters`` are the command's (the local preset is applied here); ``state.json`` records
    them, with the base model the run used, for the next command on this run id to carry over.
    ``carried_over``: those of them that came from the run's state, said in one console line and
    kept in the attempt's history.

    ``runner``: a kfp.local runner, default ``SubprocessRunner(use_venv=False)`` (this venv). The
    container tier passes a ``DockerRunner`` (tests/container), which gives the tasks only what it
    mounts and sets (no host variable reaches them, ``HF_TOKEN`` and ``MONGARS_CACHE_DIR``
    included): it mounts the run's shared cache folder where the cluster mounts the PVC.
    """
    check_safe_name("run_id", run_id)
    run_dir = Path(runs_root).resolve() / run_id
    load_state(run_dir)  # refuse a corrupted state before spending any time
    resolved = stages.resolve_local_parameters(parameters)
    if not resolved.get("champion_registry") and runner is None:
        # Champions outlive a run id: next to the runs, not inside one (docs/evaluate.md). A
        # container runner sees only what it mounts: there '' keeps them on the mounted cache.
        resolved["champion_registry"] = str(Path(runs_root).resolve() / CHAMPIONS_DIRNAME)
    stages.validate_parameters(resolved, last_stage)

    from kfp import local

    from monGARS.pipelines.mongars_pipeline import build_pipeline

    pipeline_root = run_dir / "kfp"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=runner or local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        enable_caching=True,
        cache_root=str(run_dir / "cache"),
    )
    pipeline = build_pipeline(last_stage)
    console = RunConsole(run_dir)
    # kfp.local runs a loop's iterations side by side, so tasks share the cores. llama.cpp's CPU
    # backend is built with OpenMP, whose idle threads spin by default: with more threads than
    # cores each decode waits out the spinners' time slices (measured on the tiny model at load 8
    # on 2 cores: 200-500 ms per 22-token encoder pass; 4.5 ms with passive waits). A value the
    # user set is kept; the subprocesses inherit it before they load OpenMP.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    previous_token = os.environ.get("HF_TOKEN")
    if hf_token:
        os.environ["HF_TOKEN"] = hf_token  # reaches the task subprocesses, never their arguments
    # The run's stand-in for the cluster's shared cache PVC: the base model is fetched into it once
    # and passed by reference, and sft/raft keep their checkpoints there (resume after a kill).
    previous_cache = os.environ.get(CACHE_DIR_ENV)
    shared_cache = run_dir / SHARED_CACHE_DIRNAME
    shared_cache.mkdir(parents=True, exist_ok=True)
    os.environ[CACHE_DIR_ENV] = str(shared_cache)
    previous_run_id = os.environ.get(RUN_ID_ENV)
    os.environ[RUN_ID_ENV] = run_id  # the promote step names champion versions after it
    started = time.monotonic()
    attempt: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "last_stage": last_stage,
        "parameters": resolved,
        "carried_over": sorted(carried_over or {}),
    }
    # The base model is recorded once a stage used it: the local default ('tiny') then is the
    # run's model too; a datasets-only command given none leaves the run without one.
    recorded = dict(parameters)
    if stages.STAGE_ORDER.index(last_stage) >= stages.STAGE_ORDER.index("sft"):
        recorded["base_model"] = resolved["base_model"]
    outputs: dict[str, Any] | None = None
    try:
        with console:
            console.print(run_header(run_id, resolved, last_stage, console.logs_dir))
            if carried_over:
                console.print(carried_line(run_dir, carried_over))
            task = pipeline(**resolved)
        outputs = json.loads(task.output)
        attempt["status"] = "succeeded"
    except RuntimeError as error:
        attempt["status"] = "failed"
        raise MongarsError(failure_message(run_id, error, console)) from None
    finally:
        _restore_env("HF_TOKEN", previous_token, hf_token is not None and hf_token != "")
        _restore_env(CACHE_DIR_ENV, previous_cache, True)
        _restore_env(RUN_ID_ENV, previous_run_id, True)
        attempt["wall_seconds"] = round(time.monotonic() - started, 2)
        attempt.update(attempt_record(console))
        save_state(run_dir, run_id, attempt, outputs, recorded)
    return LocalRunResult(
        run_dir=run_dir,
        state_file=state_path(run_dir),
        outputs=outputs,
        executed=console.executed,
        cached=console.cached,
        wall_seconds=attempt["wall_seconds"],
        logs_dir=console.logs_dir,
        tasks=console.tasks,
        warnings_hidden=console.warnings_hidden,
    )


def run_header(run_id: str, parameters: dict[str, Any], last_stage: str, logs_dir: Path) -> str:
    """The run's first console line: what runs, how far, and where its full logs go."""
    reach = "every stage" if last_stage == "report" else f"up to {last_stage}"
    return (
        f"run {run_id}: base model {parameters.get('base_model', '?')}, {reach}; "
        f"full logs in {shown_path(logs_dir)}/"
    )


def carried_line(run_dir: Path, carried: Mapping[str, Any]) -> str:
    """The console line naming the values a command took from its run's state."""
    shown = ", ".join(f"{name}={_short_value(value)}" for name, value in carried.items())
    return f"carried over from {shown_path(state_path(run_dir))}: {shown}"


def _short_value(value: Any, limit: int = 40) -> str:
    if isinstance(value, dict):
        keys = sorted(map(str, value))
        text = "{" + ", ".join(keys) + "}"
        return text if len(text) <= limit else f"{{{len(keys)} keys}}"
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_message(run_id: str, error: BaseException, console: RunConsole) -> str:
    """The last lines of a failed run: the failing task's tail, then one error line."""
    failed = console.failed[0] if console.failed else None
    tail = console.failure_report()
    if tail:
        console.out.write(tail + "\n")
        console.out.flush()
    if failed is not None:
        task = f"{failed.name} [{failed.module}]" if failed.module else failed.name
        return f"run {run_id}: task {task} failed; full log: {shown_path(failed.log_path)}"
    first_line = _ANSI.sub("", str(error)).splitlines()[0]
    return f"run {run_id}: {first_line}; full log: {shown_path(console.run_log)}"


def attempt_record(console: RunConsole) -> dict[str, Any]:
    """What ``state.json``'s history keeps of an attempt's tasks."""
    return {
        "executed_tasks": console.executed,
        "cached_tasks": console.cached,
        "logs": str(console.logs_dir),
        "tasks": [
            {
                "task": task.name,
                "stage": task.stage,
                "module": task.module,
                "status": task.status,
                "seconds": round(task.seconds, 2),
                "figure": task.figure,
            }
            for task in console.tasks
        ],
    }


def shown_path(path: str | Path | None) -> str:
    """A path as a person would type it: relative to the working folder when inside it."""
    if path is None:
        return ""
    try:
        location = Path(path).absolute()
        # The folder resolved, not the name: report.html and friends are links to show as such.
        return str((location.parent.resolve() / location.name).relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
