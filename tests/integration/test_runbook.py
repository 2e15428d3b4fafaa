"""The runbook's command lines, verbatim on one run id: its stage commands, then its quick start.

Build datasets, fine-tune, apply LLM2Vec to the existing adapters (a line without
``--base-model``), then export the current adapters "relying on previous state": each command
carries the run's parameters forward from ``state.json``, so the export exports exactly the
adapters and encoders the earlier commands made (same files, same figures), never a
default-parameter variant. After each command, ``current_model_dir`` and the runbook's folders
name what the next command's stage reads, checked against the artifact that stage's task was
handed (its executor input, in the task log). A second run id, built first, stays untouched.

Then the quick start's one line (flags in its order, ``tiny`` for ``<id>``) on the same run id and
project: it names the same parameters as the four stage lines together, so every stage is a cache
hit. That is the claim (one line == the stage lines in sequence) and it keeps the quick start from
training a second time; every stage it names ran for real in the commands before it. Everything
the runbook's user looks for afterwards is checked on it: the short console, the folders, the
state fields, the applied upstream configs.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from local_runs import executor_input
from runbook_project import MNTP, REPO, SIMCSE, run_runbook_line, write_project

pytestmark = pytest.mark.integration

RUN_ID = "myexperiment"
# The README's stage-specific lines, in its order, with ``tiny`` for ``<id>``.
STAGE_LINES = {
    "build_datasets": "python mongars_multistage_pipeline.py --run-id myexperiment "
    "--build-datasets --repo-root .",
    "sft": "python mongars_multistage_pipeline.py --run-id myexperiment --sft --base-model tiny",
    "llm2vec": "python mongars_multistage_pipeline.py --run-id myexperiment --llm2vec "
    "--mntp-config mntp.json --simcse-config simcse.json --llm2vec-root /path/to/llm2vec",
    "export": "python mongars_multistage_pipeline.py --run-id myexperiment --export "
    "--base-model tiny",
}
OTHER_RUN = "python mongars_multistage_pipeline.py --run-id other --build-datasets --val-split 0.2"
# Upstream-style configs with settings the tiny preset does not use: an llm2vec trained with the
# preset instead would give another encoder.
SMALL_MNTP = {**MNTP, "stop_after_n_steps": 4, "mlm_probability": 0.35}
SMALL_SIMCSE = {**SIMCSE, "stop_after_n_steps": 4}
FAKE_TOKEN = "hf_runbookFAKEtoken0123456789"
MODULES = ("platform", "training")


@dataclass
class AfterCommand:
    """What one command printed and left in the run folder."""

    result: subprocess.CompletedProcess
    state: dict[str, Any]
    hashes: dict[str, dict[str, str]]  # "<module>/<view>" -> {file: sha256}
    targets: dict[str, Path]  # "<module>/<view>" -> where its link pointed then

    @property
    def attempt(self) -> dict[str, Any]:
        return self.state["history"][-1]

    def figures(self, stage: str) -> dict[str, str]:
        return {
            task["module"]: task["figure"]
            for task in self.attempt["tasks"]
            if task["stage"] == stage
        }

    def status(self, stage: str) -> set[str]:
        return {task["status"] for task in self.attempt["tasks"] if task["stage"] == stage}

    def task_input(self, stage: str, module: str, name: str) -> str:
        """The URI of the input artifact ``name`` that this attempt handed to a task."""
        logs = Path(self.attempt["logs"])
        (log,) = logs.glob(f"*-{stage}-{module}.log")
        return executor_input(log)["inputs"]["artifacts"][name]["artifacts"][0]["uri"]


def _tree_hashes(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _after(run_dir: Path, result: subprocess.CompletedProcess) -> AfterCommand:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    views = [f"{module}/{view}" for module in MODULES for view in ("adapter", "simcse")]
    present = [view for view in views if (run_dir / view).is_dir()]
    hashes = {view: _tree_hashes(run_dir / view) for view in present}
    targets = {view: (run_dir / view).resolve() for view in present}
    state = json.loads((run_dir / "state.json").read_text())
    return AfterCommand(result, state, hashes, targets)


def _folder_listing(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: links with their targets, files with their sha256."""
    listing = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            listing[name] = "-> " + str(path.readlink())
        elif path.is_file():
            listing[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return listing


@pytest.fixture(scope="module")
def stage_commands(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, AfterCommand], dict[str, str]]:
    project = write_project(tmp_path_factory.mktemp("boutique"), SMALL_MNTP, SMALL_SIMCSE)
    env = {"HF_TOKEN": FAKE_TOKEN}
    other = run_runbook_line(project, OTHER_RUN, env)
    assert other.returncode == 0, other.stdout[-3000:] + other.stderr[-3000:]
    other_before = _folder_listing(project / "runs" / "other")
    run_dir = project / "runs" / RUN_ID
    after = {
        stage: _after(run_dir, run_runbook_line(project, line, env))
        for stage, line in STAGE_LINES.items()
    }
    return run_dir, after, other_before


def test_the_readme_prints_these_lines() -> None:
    readme = (REPO / "README.md").read_text()
    for line in STAGE_LINES.values():
        assert line.replace("--base-model tiny", "--base-model <id>") in readme, line


def test_each_command_says_what_it_carried_over(stage_commands) -> None:
    _, after, _ = stage_commands
    header = f"carried over from runs/{RUN_ID}/state.json: "
    assert header not in after["build_datasets"].result.stdout  # a new run carries nothing
    sft = after["sft"].result.stdout
    assert header + "datasets_config={code_roots, code_roots_digest}" in sft
    # The llm2vec line names no base model: the state's is used, and said.
    llm2vec = after["llm2vec"].result.stdout
    assert header + "base_model=tiny, datasets_config=" in llm2vec
    export = [line for line in after["export"].result.stdout.splitlines() if header in line]
    assert len(export) == 1 and "mntp_config={" in export[0] and "simcse_config={" in export[0]
    assert after["export"].attempt["carried_over"] == [
        "datasets_config",
        "mntp_config",
        "simcse_config",
    ]
    assert after["export"].state["parameters"]["mntp_config"] == SMALL_MNTP


def test_current_model_dir_names_what_the_next_stage_reads(stage_commands) -> None:
    run_dir, after, _ = stage_commands
    for module in MODULES:
        built = after["build_datasets"].state["modules"][module]
        assert built["current_model_dir"] == "" and built["adapter_path"] == ""
        assert not any(
            name.startswith(f"{module}/") for name in after["build_datasets"].state["layout_links"]
        )

        sft = after["sft"].state["modules"][module]
        assert Path(sft["current_model_dir"]) == run_dir / module / "adapter"
        assert after["sft"].targets[f"{module}/adapter"] == Path(sft["sft_adapter"]) / "adapter"
        # ... and the --llm2vec command's llm2vec task was handed exactly that adapter.
        assert after["llm2vec"].task_input("llm2vec", module, "sft_adapter") == sft["sft_adapter"]
        adapter = f"{module}/adapter"
        assert after["llm2vec"].targets[adapter] == after["sft"].targets[adapter]

        llm2vec = after["llm2vec"].state["modules"][module]
        assert Path(llm2vec["current_model_dir"]) == run_dir / module / "simcse"
        assert Path(llm2vec["simcse_dir"]) == run_dir / module / "simcse"
        assert after["llm2vec"].targets[f"{module}/simcse"] == Path(llm2vec["encoder"]) / "encoder"
        # ... and the --export command's export task was handed exactly that encoder.
        assert after["export"].task_input("export", module, "encoder") == llm2vec["encoder"]

        exported = after["export"].state["modules"][module]
        assert Path(exported["current_model_dir"]) == run_dir / module / "simcse"
        for view in ("adapter", "simcse"):
            assert (
                after["export"].targets[f"{module}/{view}"]
                == after["llm2vec"].targets[f"{module}/{view}"]
            )
        assert list((run_dir / module / "gguf").glob(f"{module}-encoder-*.gguf"))

    # Each command's folders are its own outputs, nothing left from a later stage of another.
    views = {
        stage: [link for link in done.state["layout_links"] if link.startswith("training/")]
        for stage, done in after.items()
    }
    assert views == {
        "build_datasets": [],
        "sft": ["training/adapter"],
        "llm2vec": ["training/adapter", "training/mntp", "training/simcse"],
        "export": ["training/adapter", "training/gguf", "training/mntp", "training/simcse"],
    }


def test_export_exports_the_adapters_and_encoders_the_earlier_commands_made(
    stage_commands,
) -> None:
    _, after, _ = stage_commands
    export = after["export"]
    for stage in ("build_datasets", "fetch_base_model", "sft", "llm2vec"):
        assert export.status(stage) == {"cached"}, (stage, export.attempt["tasks"])
    assert export.status("export") == {"done"}
    for module in MODULES:
        for stage in ("sft", "llm2vec"):
            made = after[stage].state["modules"][module]
            for key in ("sft_adapter", "encoder") if stage == "llm2vec" else ("sft_adapter",):
                assert export.state["modules"][module][key] == made[key], (module, key)
        assert export.hashes[f"{module}/adapter"] == after["sft"].hashes[f"{module}/adapter"]
        assert export.hashes[f"{module}/simcse"] == after["llm2vec"].hashes[f"{module}/simcse"]
    assert export.figures("sft") == after["sft"].figures("sft")
    assert export.figures("llm2vec") == after["llm2vec"].figures("llm2vec")
    assert all("retrieval MRR" in figure for figure in export.figures("llm2vec").values())


def test_llm2vec_trained_with_the_configs_of_its_line(stage_commands) -> None:
    run_dir, _, _ = stage_commands
    for module in MODULES:
        applied = json.loads((run_dir / module / "mntp" / "training_config.json").read_text())
        assert applied["config"]["mlm_probability"] == SMALL_MNTP["mlm_probability"]
        assert applied["config"]["mntp_steps"] == SMALL_MNTP["stop_after_n_steps"]
        # --simcse-config is a SimCSE recipe: SimCSE ran, for the steps its file says.
        metrics = json.loads((run_dir / module / "mntp" / "metrics.json").read_text())
        assert metrics["contrastive_phases"] == ["simcse"], metrics["contrastive_phases"]
        assert len(metrics["simcse"]["losses"]) == SMALL_SIMCSE["stop_after_n_steps"]


def test_another_run_id_is_untouched(stage_commands) -> None:
    run_dir, after, other_before = stage_commands
    assert _folder_listing(run_dir.parent / "other") == other_before
    # and nothing of it reached this run: its val_split stayed the default.
    assert "val_split" not in after["export"].state["parameters"]
    other_state = json.loads((run_dir.parent / "other" / "state.json").read_text())
    assert other_state["parameters"]["val_split"] == 0.2


def test_the_token_is_never_recorded(stage_commands, quick_start) -> None:
    """Neither by the stage commands nor by the quick start, all given HF_TOKEN."""
    run_dir, _, _ = stage_commands
    written = [run_dir / "state.json", run_dir.parent / "other" / "state.json"]
    written += [path for path in (run_dir / "logs").rglob("*.log") if not path.is_symlink()]
    for path in written:
        assert FAKE_TOKEN not in path.read_text(errors="replace"), path


# The runbook's quick start, flags in its order, with ``tiny`` for ``<id>``.
QUICK_START = (
    "python mongars_multistage_pipeline.py --run-id myexperiment --repo-root . "
    "--build-datasets --sft --llm2vec --export --base-model tiny "
    "--mntp-config mntp.json --simcse-config simcse.json --llm2vec-root /path/to/llm2vec"
)
# Every task the stage commands ran that the quick start must find in the cache: all but
# resolve_sources (re-reads the sources), promote (the champion registry outlives runs) and report.
TRAINED = (
    "build_datasets",
    "fetch_base_model",
    "sft",
    "llm2vec",
    "raft_off",
    "merge_adapter",
    "export",
    "evaluate",
)


@pytest.fixture(scope="module")
def quick_start(stage_commands) -> tuple[Path, AfterCommand]:
    run_dir, _, _ = stage_commands
    result = run_runbook_line(run_dir.parent.parent, QUICK_START, {"HF_TOKEN": FAKE_TOKEN})
    return run_dir, _after(run_dir, result)


def test_the_readme_prints_the_quick_start() -> None:
    readme = " ".join((REPO / "README.md").read_text().replace("\\\n", " ").split())
    assert QUICK_START.replace("--base-model tiny", "--base-model <id>") in readme


def test_quick_start_is_the_stage_commands_in_one_line(quick_start) -> None:
    """Same parameters as the four stage lines together: nothing trains again."""
    _, done = quick_start
    statuses = {task["stage"]: set() for task in done.attempt["tasks"]}
    for task in done.attempt["tasks"]:
        statuses[task["stage"]].add(task["status"])
    for stage in TRAINED:
        assert statuses.get(stage) == {"cached"}, (stage, done.attempt["tasks"])
    assert done.state["parameters"]["mntp_config"] == SMALL_MNTP
    assert done.state["parameters"]["simcse_config"] == SMALL_SIMCSE


def test_quick_start_prints_a_short_console(quick_start) -> None:
    _, done = quick_start
    result = done.result
    assert "--llm2vec-root is no longer needed" in result.stderr
    printed = len(result.stdout.encode()) + len(result.stderr.encode())
    assert printed < 5000, result.stdout
    assert "executor_input" not in result.stdout
    for stage in ("build_datasets", "sft [training]", "llm2vec [platform]", "export [training]"):
        assert f"  cached  {stage}" in result.stdout, stage
    assert "report.html" in result.stdout


def test_repo_root_is_the_tree_the_module_datasets_come_from(quick_start) -> None:
    run_dir, _ = quick_start
    training = (run_dir / "internal_datasets" / "training" / "train.jsonl").read_text()
    platform = (run_dir / "internal_datasets" / "platform" / "train.jsonl").read_text()
    both = (
        training + platform + (run_dir / "internal_datasets" / "platform" / "val.jsonl").read_text()
    )
    assert "boutique.training.entrainement" in training
    assert "boutique.api.panier" in platform
    # Nothing from the monGARS package itself: --repo-root replaced the default tree.
    assert "monGARS.mlops" not in both


def test_runbook_folders_are_links_onto_the_artifacts(quick_start) -> None:
    run_dir, _ = quick_start
    kinds = {path.name for path in (run_dir / "french_datasets").iterdir()}
    assert {"instruction", "conversation", "retrieval"} <= kinds
    assert (run_dir / "french_datasets" / "instruction" / "train.jsonl").stat().st_size > 0
    for module in MODULES:
        for view in ("adapter", "mntp", "simcse", "gguf"):
            link = run_dir / module / view
            assert link.is_symlink() and link.resolve().is_relative_to((run_dir / "kfp").resolve())
        assert (run_dir / module / "adapter" / "adapter_config.json").is_file()
        assert (run_dir / module / "simcse" / "config.json").is_file()
        ggufs = sorted(path.name for path in (run_dir / module / "gguf").glob("*.gguf"))
        assert f"{module}-chat-F16.gguf" in ggufs and f"{module}-encoder-F16.gguf" in ggufs
    report = run_dir / "report.html"
    assert not report.is_symlink() and report.read_text().startswith("<!doctype html>")
    # The latest attempt logs what it ran; the sft task that made the adapter logged in its own.
    assert list((run_dir / "logs" / "latest").glob("*-report.log"))
    assert list((run_dir / "logs").glob("2*/*-sft-training.log"))


def test_state_has_the_runbook_fields(quick_start) -> None:
    run_dir, done = quick_start
    state = done.state
    assert Path(state["french_datasets_dir"]).is_dir()
    for name, module in state["modules"].items():
        assert Path(module["sft_adapter"]).is_dir()  # today's field, next to the runbook's
        assert module["train_count"] == len(Path(module["train_path"]).read_text().splitlines())
        assert module["val_count"] >= 1 and Path(module["val_path"]).is_file()
        assert Path(module["adapter_path"]) == run_dir / name / "adapter"
        assert Path(module["current_model_dir"]) == run_dir / name / "simcse"
        assert (Path(module["current_model_dir"]) / "config.json").is_file()
    assert state["history"][-1]["status"] == "succeeded"


def test_upstream_llm2vec_configs_were_applied(quick_start) -> None:
    run_dir, _ = quick_start
    applied = json.loads((run_dir / "training" / "mntp" / "training_config.json").read_text())
    assert applied["config"]["mlm_probability"] == SMALL_MNTP["mlm_probability"]
    assert applied["config"]["simcse_dropout"] == SMALL_SIMCSE["simcse_dropout"]
    upstream = json.dumps(applied["upstream"])
    assert "model_name_or_path" in upstream  # reported as ignored, with its reason
