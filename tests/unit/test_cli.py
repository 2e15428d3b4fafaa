"""The `mongars` command and the runbook's flags."""

from __future__ import annotations

import json
import shlex
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


def test_runbook_requires_base_model_for_sft(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert runbook_main(["--run-id", "x", "--runs-root", str(tmp_path), "--sft"]) == 2
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


# The runbook's quick start, flags in its order (the base model and paths are placeholders there).
QUICK_START = shlex.split(
    "--run-id myexperiment --repo-root . --build-datasets --sft --llm2vec --export "
    "--base-model tiny --mntp-config mntp.json --simcse-config simcse.json "
    "--llm2vec-root /path/to/llm2vec"
)


def test_quick_start_flags_parse_as_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monGARS.cli import build_runbook_parser

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mntp.json").write_text(json.dumps({"mlm_probability": 0.3}))
    (tmp_path / "simcse.json").write_text(json.dumps({"simcse_dropout": 0.2}))
    args = build_runbook_parser().parse_args(QUICK_START)
    parameters = parameters_from_args(args)
    assert last_stage_from_args(args) == "report"
    assert parameters["datasets_config"]["code_roots"] == [str(tmp_path.resolve())]
    assert parameters["mntp_config"] == {"mlm_probability": 0.3}
    assert parameters["simcse_config"] == {"simcse_dropout": 0.2}
    assert parameters["base_model"] == "tiny" and parameters["run_name"] == "myexperiment"


def test_repo_root_joins_the_datasets_config_of_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "params.json"
    config.write_text(json.dumps({"datasets_config": {"module_map": ["*=all"], "seed": 3}}))
    tree = tmp_path / "src"
    tree.mkdir()
    parameters = parameters_from_args(_parse("--config", str(config), "--repo-root", str(tree)))
    assert parameters["datasets_config"] == {
        "module_map": ["*=all"],
        "seed": 3,
        "code_roots": [str(tree.resolve())],
        "code_roots_digest": parameters["datasets_config"]["code_roots_digest"],
    }
    remote = parameters_from_args(_parse("--repo-root", "gs://bucket/src.tar.gz"))
    assert remote["datasets_config"]["code_roots"] == ["gs://bucket/src.tar.gz"]


def test_missing_repo_root_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = runbook_main(["--repo-root", "/nonexistent/tree", "--base-model", "tiny"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: --repo-root: /nonexistent/tree does not exist") and "\n" not in err
    )


def test_validate_accepts_repo_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from monGARS.cli import main

    assert main(["validate", "--repo-root", str(tmp_path), "--base-model", "tiny"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True


def test_build_datasets_sets_an_unreadable_state_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from monGARS.cli import _prepare_state, build_runbook_parser

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "state.json").write_text("{oops")
    args = build_runbook_parser().parse_args(
        ["--run-id", "x", "--runs-root", str(tmp_path), "--build-datasets"]
    )
    _prepare_state(args)
    assert not (tmp_path / "x" / "state.json").exists()
    assert [p.read_text() for p in (tmp_path / "x").glob("state.json.unreadable-*")] == ["{oops"]
    assert "could not be read; moved to state.json.unreadable-" in capsys.readouterr().err


def test_later_stage_on_a_new_run_says_datasets_come_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from monGARS.cli import _prepare_state, _state_notices, build_runbook_parser

    args = build_runbook_parser().parse_args(
        ["--run-id", "x", "--runs-root", str(tmp_path), "--sft"]
    )
    _state_notices(args, _prepare_state(args), "sft")
    err = capsys.readouterr().err.strip()
    assert err.startswith("notice: run x has no state.json yet") and "--build-datasets" in err
    assert "\n" not in err


def test_a_changed_tree_changes_the_datasets_parameters(tmp_path: Path) -> None:
    """KFP's cache key sees parameters: editing the mined code must change them, else a re-run
    would serve the old datasets from the cache."""
    (tmp_path / "pkg").mkdir()
    source = tmp_path / "pkg" / "shop.py"
    source.write_text("def total(cart):\n    return sum(cart)\n")

    def digest() -> str:
        args = _parse("--repo-root", str(tmp_path))
        return parameters_from_args(args)["datasets_config"]["code_roots_digest"]

    first = digest()
    assert first == digest()
    (tmp_path / "notes.txt").write_text("not mined")
    (tmp_path / "pkg" / "test_shop.py").write_text("def test_x():\n    pass\n")
    assert digest() == first  # only what the miner reads counts
    source.write_text("def total(cart):\n    return sum(cart) * 2\n")
    assert digest() != first
