"""The `mongars` command and the runbook's flags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from monGARS.cli import build_parser, last_stage_from_args, parameters_from_args, runbook_main

REPO = Path(__file__).resolve().parents[2]


def _parse(*argv: str):
    return build_parser().parse_args(["run", *argv])


def test_runbook_flags_map_to_pipeline_parameters(tmp_path: Path) -> None:
    mntp = tmp_path / "mntp.json"
    mntp.write_text(json.dumps({"mlm_probability": 0.3, "lora_r": 8}))
    args = _parse(
        "--run-id", "x", "--base-model", "tiny", "--languages", "fr,en", "--val-split", "0.2",
        "--split-seed", "7", "--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0.1",
        "--epochs", "2", "--batch-size", "2", "--vram-budget-mb", "24000",
        "--export-method", "q4_k_m", "--mntp-config", str(mntp), "--raft",
    )  # fmt: skip
    parameters = parameters_from_args(args)
    assert parameters == {
        "base_model": "tiny",
        "languages": ["fr", "en"],
        "val_split": 0.2,
        "split_seed": 7,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.1,
        "epochs": 2.0,
        "batch_size": 2,
        "vram_budget_mb": 24000,
        "export_method": "q4_k_m",
        "mntp_config": {"mlm_probability": 0.3, "lora_r": 8},
        "raft": True,
        "run_name": "x",
    }


def test_hf_token_is_never_a_parameter() -> None:
    args = _parse("--hf-token", "hf_SECRETSECRET")
    assert "hf_SECRETSECRET" not in json.dumps(parameters_from_args(args))


@pytest.mark.parametrize(
    ("flags", "last"),
    [
        ((), "report"),
        (("--build-datasets",), "build_datasets"),
        (("--build-datasets", "--sft"), "sft"),
        (("--sft", "--llm2vec"), "llm2vec"),
        (("--export",), "report"),
        (("--raft",), "report"),
        (("--sft", "--raft"), "sft"),
    ],
)
def test_stage_flags_pick_how_far_the_dag_runs(flags: tuple[str, ...], last: str) -> None:
    assert last_stage_from_args(_parse(*flags)) == last


def test_raft_flag_turns_the_stage_on() -> None:
    assert parameters_from_args(_parse("--raft"))["raft"] is True
    assert "raft" not in parameters_from_args(_parse())


def test_runbook_requires_base_model_for_sft(capsys: pytest.CaptureFixture[str]) -> None:
    assert runbook_main(["--run-id", "x", "--sft"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --base-model: required") and "\n" not in err


def test_missing_config_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert runbook_main(["--mntp-config", "/nonexistent/mntp.json", "--base-model", "tiny"]) == 2
    assert "--mntp-config: config file /nonexistent/mntp.json: not found" in capsys.readouterr().err


@pytest.mark.parametrize("run_id", ["../escape", "a;b", "$(whoami)"])
def test_unsafe_run_id_refused_before_anything_is_written(
    tmp_path: Path, run_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = runbook_main(["--run-id", run_id, "--runs-root", str(tmp_path), "--base-model", "tiny"])
    assert code == 2
    assert "run_id:" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_corrupted_state_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "state.json").write_text("{oops")
    code = runbook_main(["--run-id", "x", "--runs-root", str(tmp_path), "--base-model", "tiny"])
    assert code == 2
    assert "state.json cannot be read" in capsys.readouterr().err


def test_llm2vec_root_is_accepted_with_a_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "state.json").write_text("{oops")  # stops the run right after the notice
    runbook_main(["--run-id", "x", "--runs-root", str(tmp_path), "--llm2vec-root", "/old"])
    assert "--llm2vec-root is no longer needed" in capsys.readouterr().err


def test_runbook_script_help_runs() -> None:
    result = subprocess.run(
        [sys.executable, "mongars_multistage_pipeline.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    for flag in ("--run-id", "--runs-root", "--build-datasets", "--export-cmd", "--simcse-config"):
        assert flag in result.stdout
