"""The runbook's quick start, run verbatim: its command line, its folders, its state fields.

The command is the runbook's, flags in its order, with ``tiny`` for ``<id>``; it runs in a small
French project whose source tree ``--repo-root .`` names, next to upstream-style llm2vec JSON
configs. Everything the runbook's user looks for afterwards is checked.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from runbook_project import MNTP, SIMCSE, run_runbook_line, write_project

pytestmark = pytest.mark.integration

QUICK_START = (
    "python mongars_multistage_pipeline.py --run-id myexperiment --repo-root . "
    "--build-datasets --sft --llm2vec --export --base-model tiny "
    "--mntp-config mntp.json --simcse-config simcse.json --llm2vec-root /path/to/llm2vec"
)


@pytest.fixture(scope="module")
def quick_start(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess]:
    project = write_project(tmp_path_factory.mktemp("boutique"))
    result = run_runbook_line(project, QUICK_START)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project / "runs" / "myexperiment", result


def test_quick_start_runs_and_prints_a_short_console(quick_start) -> None:
    _, result = quick_start
    assert "--llm2vec-root is no longer needed" in result.stderr
    printed = len(result.stdout.encode()) + len(result.stderr.encode())
    assert printed < 5000, result.stdout
    assert "executor_input" not in result.stdout
    for stage in ("build_datasets", "sft [training]", "llm2vec [platform]", "export [training]"):
        assert f"  done    {stage}" in result.stdout, stage
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
    for module in ("training", "platform"):
        for view in ("adapter", "mntp", "simcse", "gguf"):
            link = run_dir / module / view
            assert link.is_symlink() and link.resolve().is_relative_to((run_dir / "kfp").resolve())
        assert (run_dir / module / "adapter" / "adapter_config.json").is_file()
        assert (run_dir / module / "simcse" / "config.json").is_file()
        ggufs = sorted(path.name for path in (run_dir / module / "gguf").glob("*.gguf"))
        assert f"{module}-chat-F16.gguf" in ggufs and f"{module}-encoder-F16.gguf" in ggufs
    report = run_dir / "report.html"
    assert not report.is_symlink() and report.read_text().startswith("<!doctype html>")
    assert list((run_dir / "logs" / "latest").glob("*-sft-training.log"))


def test_state_has_the_runbook_fields(quick_start) -> None:
    run_dir, _ = quick_start
    state = json.loads((run_dir / "state.json").read_text())
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
    assert applied["config"]["mlm_probability"] == MNTP["mlm_probability"]
    assert applied["config"]["simcse_dropout"] == SIMCSE["simcse_dropout"]
    upstream = json.dumps(applied["upstream"])
    assert "model_name_or_path" in upstream  # reported as ignored, with its reason
