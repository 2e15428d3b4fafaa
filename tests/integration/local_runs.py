"""The tiny pipeline's uninterrupted kfp.local run, made once per test session and shared.

`make test` hands whole files to several pytest-xdist workers. Two files need the same
uninterrupted run: test_local_pipeline.py (artifacts, cache hits, partial re-runs on top of it)
and test_local_pipeline_resume.py (a killed run must end with the same GGUF files). Made once in a
folder every worker sees, under a lock: the first file to ask runs it, the other waits for it or
finds it done; run alone, each file makes it itself. The resume file asks only after its kills,
so on two workers the two files' runs overlap instead of queueing behind each other.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

# Smaller than `make run` so the suite stays quick; the stages still do their real work: sft
# saves a checkpoint halfway (the killed run's second kill point) and every llm2vec phase trains.
FAST = {
    "max_steps": 8,
    "sft_config": {"eval_steps": 8, "save_steps": 4, "logging_steps": 2},
    "llm2vec_config": {"mntp_steps": 4, "simcse_steps": 4, "supervised_steps": 4},
    "eval_max_examples": 3,
    "eval_answer_length": 8,
}
KNOWN_TOKEN = "hf_monGARSTestTokenMustNeverLeak0042"
RUN_ID = "itest"


@dataclass(frozen=True)
class RecordedRun:
    """What the tests read of a finished ``run_local`` (kept as JSON for the other workers)."""

    runs_root: Path
    state_file: Path
    outputs: dict
    executed: list[str]
    cached: list[str]


def _session_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temp folder that every xdist worker of this session shares."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared_uninterrupted_run(tmp_path_factory: pytest.TempPathFactory) -> RecordedRun:
    """The run, made by whichever worker asks first (see the module docstring)."""
    from monGARS.deploy.local_run import run_local

    shared = _session_folder(tmp_path_factory) / "uninterrupted-run"
    shared.mkdir(exist_ok=True)
    record = shared / "run.json"
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not record.is_file():
            runs_root = shared / "runs"
            result = run_local(RUN_ID, dict(FAST), runs_root=runs_root, hf_token=KNOWN_TOKEN)
            fields = {
                "runs_root": str(runs_root),
                "state_file": str(result.state_file),
                "outputs": result.outputs,
                "executed": result.executed,
                "cached": result.cached,
            }
            partial = record.with_suffix(".partial")
            partial.write_text(json.dumps(fields), encoding="utf-8")
            partial.replace(record)
    fields = json.loads(record.read_text(encoding="utf-8"))
    return RecordedRun(
        runs_root=Path(fields["runs_root"]),
        state_file=Path(fields["state_file"]),
        outputs=fields["outputs"],
        executed=fields["executed"],
        cached=fields["cached"],
    )


def bundle_hashes(outputs: dict) -> dict[str, str]:
    """sha256 of every GGUF file a run's outputs list, by module, role and type."""
    hashes = {}
    for module in outputs["modules"].values():
        bundle = json.loads((Path(module["gguf_bundle"]) / "bundle.json").read_text())
        for role in ("chat", "encoder"):
            for label, entry in bundle[role]["files"].items():
                hashes[f"{bundle['module']}.{role}.{label}"] = entry["sha256"]
    return hashes


def executor_input(log: Path) -> dict:
    """The executor input kfp.local echoes at a task's start (``Got executor_input:`` + JSON)."""
    lines = log.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith("Got executor_input:")) + 1
    depth, end = 0, start
    for end in range(start, len(lines)):
        depth += lines[end].count("{") - lines[end].count("}")
        if depth == 0:
            break
    return json.loads("\n".join(lines[start : end + 1]))


def task_output_uri(attempt: dict, task_log: str, artifact: str) -> str:
    """Where an attempt's task (``state.json`` history entry; the task by its log's name, e.g.
    ``merge_adapter-platform``) wrote its output artifact ``artifact``, read from the executor
    input it was given."""
    (log,) = Path(attempt["logs"]).glob(f"*-{task_log}.log")
    return executor_input(log)["outputs"]["artifacts"][artifact]["artifacts"][0]["uri"]
