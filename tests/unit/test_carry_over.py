"""A stage command carries its run's parameters forward: ``state.json`` is the run's memory.

These run the command lines up to the point where the pipeline would start (``run_local`` is
replaced by a recorder); the real sequence of runbook commands runs in
tests/integration/test_runbook.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from monGARS.cli import main, runbook_main
from monGARS.mlops import parameters as parameter_table
from monGARS.mlops import state as state_module
from monGARS.mlops.state import carry_over, load_state, recorded_parameters, save_state

MNTP = {"mlm_probability": 0.3, "stop_after_n_steps": 3}


class RecordedRun:
    """Stands in for ``run_local``: keeps what each command would have run with."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, run_id: str, parameters: dict[str, Any], **options: Any) -> Any:
        self.calls.append({"run_id": run_id, "parameters": parameters, **options})
        raise SystemExit(0)  # stop before the result is printed; nothing ran

    @property
    def last(self) -> dict[str, Any]:
        return self.calls[-1]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> RecordedRun:
    recorded = RecordedRun()
    monkeypatch.setattr("monGARS.deploy.local_run.run_local", recorded)
    return recorded


def _record_run(runs_root: Path, run_id: str, parameters: dict[str, Any], **state: Any) -> None:
    """A state.json as an earlier command on ``run_id`` leaves it."""
    save_state(runs_root / run_id, run_id, {"status": "succeeded"}, None, parameters)
    if state:
        path = runs_root / run_id / "state.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **state}))


def _command(runs_root: Path, run_id: str, *flags: str, entry: Any = runbook_main) -> None:
    argv = ["--run-id", run_id, "--runs-root", str(runs_root), *flags]
    with pytest.raises(SystemExit):
        entry(argv if entry is runbook_main else ["run", *argv])


EARLIER = {"base_model": "tiny", "lora_r": 8, "mntp_config": MNTP, "run_name": "demo2"}


def test_export_line_runs_with_what_the_earlier_commands_used(
    tmp_path: Path, recorder: RecordedRun, capsys: pytest.CaptureFixture[str]
) -> None:
    _record_run(tmp_path, "demo2", EARLIER)
    _command(tmp_path, "demo2", "--export", "--base-model", "tiny")
    call = recorder.last
    assert call["parameters"]["lora_r"] == 8 and call["parameters"]["mntp_config"] == MNTP
    assert call["carried_over"] == {"lora_r": 8, "mntp_config": MNTP}  # base_model was given
    assert call["last_stage"] == "report"


def test_a_flag_given_now_wins(tmp_path: Path, recorder: RecordedRun) -> None:
    _record_run(tmp_path, "demo2", EARLIER)
    _command(tmp_path, "demo2", "--export", "--base-model", "tiny", "--lora-r", "4")
    assert recorder.last["parameters"]["lora_r"] == 4
    assert "lora_r" not in recorder.last["carried_over"]


def test_llm2vec_line_takes_the_base_model_from_the_state(
    tmp_path: Path, recorder: RecordedRun
) -> None:
    (tmp_path / "mntp.json").write_text(json.dumps({"mlm_probability": 0.4}))
    _record_run(tmp_path, "demo2", EARLIER)
    _command(tmp_path, "demo2", "--llm2vec", "--mntp-config", str(tmp_path / "mntp.json"))
    call = recorder.last
    assert call["parameters"]["base_model"] == "tiny" and call["last_stage"] == "llm2vec"
    assert call["parameters"]["mntp_config"] == {"mlm_probability": 0.4}  # the file given now
    assert set(call["carried_over"]) == {"base_model", "lora_r"}


def test_base_model_needed_where_the_state_names_none(
    tmp_path: Path, recorder: RecordedRun, capsys: pytest.CaptureFixture[str]
) -> None:
    assert runbook_main(["--run-id", "fresh", "--runs-root", str(tmp_path), "--llm2vec"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --base-model: required") and "names none yet" in err
    assert "\n" not in err and not recorder.calls


@pytest.mark.parametrize("stage", ["--sft", "--export"])
def test_runbook_asks_base_model_on_sft_and_export_lines(
    tmp_path: Path, recorder: RecordedRun, capsys: pytest.CaptureFixture[str], stage: str
) -> None:
    _record_run(tmp_path, "demo2", EARLIER)
    assert runbook_main(["--run-id", "demo2", "--runs-root", str(tmp_path), stage]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --base-model: required for --sft and --export")
    assert "--base-model tiny keeps it" in err and not recorder.calls


def test_mongars_run_carries_too_and_defaults_to_tiny(
    tmp_path: Path, recorder: RecordedRun
) -> None:
    _command(tmp_path, "fresh", entry=main)
    assert recorder.last["carried_over"] == {}
    assert "base_model" not in recorder.last["parameters"]  # the local run's default applies
    _record_run(tmp_path, "demo2", {**EARLIER, "raft": True})
    _command(tmp_path, "demo2", entry=main)
    assert recorder.last["parameters"]["raft"] is True
    _command(tmp_path, "demo2", "--no-raft", entry=main)
    assert recorder.last["parameters"]["raft"] is False  # a carried switch can be turned off


def test_another_run_id_carries_nothing(tmp_path: Path, recorder: RecordedRun) -> None:
    _record_run(tmp_path, "demo2", EARLIER)
    before = (tmp_path / "demo2" / "state.json").read_bytes()
    _command(tmp_path, "other", "--export", "--base-model", "tiny")
    assert recorder.last["carried_over"] == {}
    assert "lora_r" not in recorder.last["parameters"]
    assert (tmp_path / "demo2" / "state.json").read_bytes() == before


def test_repo_root_replaces_only_the_tree_of_a_carried_datasets_config(
    tmp_path: Path, recorder: RecordedRun
) -> None:
    earlier = {
        "datasets_config": {
            "module_map": ["*=all"],
            "code_roots": ["/old/tree"],
            "code_roots_digest": "0123",
        }
    }
    _record_run(tmp_path, "demo2", {**EARLIER, **earlier})
    (tmp_path / "tree").mkdir()
    _command(tmp_path, "demo2", "--build-datasets", "--repo-root", str(tmp_path / "tree"))
    datasets_config = recorder.last["parameters"]["datasets_config"]
    assert datasets_config["module_map"] == ["*=all"]
    assert datasets_config["code_roots"] == [str((tmp_path / "tree").resolve())]
    assert recorder.last["carried_over"]["datasets_config"] == {"module_map": ["*=all"]}
    _command(tmp_path, "demo2", "--build-datasets")
    assert recorder.last["carried_over"]["datasets_config"] == earlier["datasets_config"]


def test_every_declared_parameter_is_carried(monkeypatch: pytest.MonkeyPatch) -> None:
    """Carried by the table, not by a list: a parameter added later is carried as well."""
    extra = parameter_table.Parameter("source_revision", str, "", "added by a later change")
    table = (*parameter_table.PARAMETERS, extra)
    monkeypatch.setattr(state_module, "PARAMETERS", table)
    monkeypatch.setattr(state_module, "BY_NAME", {p.name: p for p in table})
    recorded = {p.name: f"earlier-{p.name}" for p in table}
    parameters, carried = carry_over(recorded, {"lora_r": 4})
    assert set(carried) == {p.name for p in table} - {"lora_r"}
    assert parameters["lora_r"] == 4 and parameters["source_revision"] == "earlier-source_revision"


def test_secrets_and_undeclared_keys_never_reach_the_state(tmp_path: Path) -> None:
    save_state(
        tmp_path,
        "x",
        {"status": "succeeded"},
        None,
        {"base_model": "tiny", "hf_token": "hf_SECRETSECRET", "lora_r": 8},
    )
    assert "hf_SECRETSECRET" not in (tmp_path / "state.json").read_text()
    assert recorded_parameters(load_state(tmp_path)) == {"base_model": "tiny", "lora_r": 8}


def test_hf_token_flag_is_not_carried_or_recorded(tmp_path: Path, recorder: RecordedRun) -> None:
    _command(tmp_path, "x", "--build-datasets", "--hf-token", "hf_SECRETSECRET")
    call = recorder.last
    assert call["hf_token"] == "hf_SECRETSECRET"  # reaches the tasks' environment only
    assert "hf_SECRETSECRET" not in json.dumps(call["parameters"])


FULL_RUN_LINKS = [
    "french_datasets",
    "internal_datasets/platform",
    "internal_datasets/training",
    "platform/adapter",
    "platform/gguf",
    "platform/mntp",
    "platform/simcse",
    "report.html",
    "training/adapter",
    "training/gguf",
    "training/mntp",
    "training/simcse",
]


def test_build_datasets_on_an_existing_run_says_what_it_resets(
    tmp_path: Path, recorder: RecordedRun, capsys: pytest.CaptureFixture[str]
) -> None:
    _record_run(tmp_path, "demo2", EARLIER, layout_links=FULL_RUN_LINKS)
    _command(tmp_path, "demo2", "--build-datasets")
    err = capsys.readouterr().err.strip()
    assert err.startswith("notice: --build-datasets on run demo2 resets the ") and "\n" not in err
    assert "adapter/gguf/mntp/simcse views and current_model_dir of platform, training" in err
    assert "the run's parameters carry over" in err
    assert recorder.last["carried_over"]["lora_r"] == 8


def test_a_command_stopping_earlier_says_which_views_go(
    tmp_path: Path, recorder: RecordedRun, capsys: pytest.CaptureFixture[str]
) -> None:
    _record_run(tmp_path, "demo2", EARLIER, layout_links=FULL_RUN_LINKS)
    _command(tmp_path, "demo2", "--sft", "--base-model", "tiny")
    err = capsys.readouterr().err
    assert "--sft on run demo2 resets the gguf/mntp/simcse views" in err
    _command(tmp_path, "demo2", "--export", "--base-model", "tiny")
    assert "resets" not in capsys.readouterr().err  # a full run remakes every view


def test_unreadable_state_set_aside_carries_nothing(
    tmp_path: Path, recorder: RecordedRun, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "demo2").mkdir()
    (tmp_path / "demo2" / "state.json").write_text("{oops")
    _command(tmp_path, "demo2", "--build-datasets")
    assert "nothing is carried over from it" in capsys.readouterr().err
    assert recorder.last["carried_over"] == {}


def test_validate_checks_the_carried_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _record_run(tmp_path, "demo2", {**EARLIER, "lora_r": 0})
    argv = ["validate", "--run-id", "demo2", "--runs-root", str(tmp_path), "--sft"]
    assert main(argv) == 2
    assert "lora_r" in capsys.readouterr().err
    assert main([*argv, "--lora-r", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["carried_over"] == ["base_model", "mntp_config"]


def test_carried_line_names_each_value_briefly(tmp_path: Path) -> None:
    from monGARS.deploy.local_run import carried_line

    line = carried_line(
        tmp_path / "demo2",
        {"base_model": "tiny", "lora_r": 8, "mntp_config": MNTP, "languages": ["fr", "en"]},
    )
    assert line.endswith(
        "state.json: base_model=tiny, lora_r=8, "
        "mntp_config={mlm_probability, stop_after_n_steps}, languages=fr,en"
    )
    assert "\n" not in line
