"""The runbook's view of a run folder (symlinks onto the latest attempt) and its state fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.run_layout import module_view_name, refresh_layout
from monGARS.mlops.state import load_state, save_state, set_aside_unreadable_state


def _attempt(root: Path, name: str, modules: list[str], *, stages: int = 3) -> dict:
    """Artifacts laid out as KFP writes them, and the report summary pointing at them."""
    attempt = root / "kfp" / name
    datasets = attempt / "build-datasets" / "datasets"
    (datasets / "corpora" / "instruction").mkdir(parents=True)
    (datasets / "corpora" / "instruction" / "train.jsonl").write_text('{"id": 1}\n')
    outputs: dict = {"datasets": str(datasets), "report": "", "modules": {}}
    for index, module in enumerate(modules):
        folder = datasets / "modules" / module
        folder.mkdir(parents=True)
        (folder / "train.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
        (folder / "val.jsonl").write_text('{"a": 3}\n')
        entry = {"train_records": 2, "val_records": 1, "sft_adapter": "", "encoder": ""}
        iteration = attempt / f"for-loop-1-iteration-{index}"
        if stages >= 1:
            (iteration / "sft" / "adapter" / "adapter").mkdir(parents=True)
            (iteration / "sft" / "adapter" / "adapter" / "adapter_config.json").write_text("{}")
            entry["sft_adapter"] = str(iteration / "sft" / "adapter")
        if stages >= 2:
            (iteration / "llm2vec" / "encoder" / "encoder").mkdir(parents=True)
            (iteration / "llm2vec" / "encoder" / "metrics.json").write_text("{}")
            entry["encoder"] = str(iteration / "llm2vec" / "encoder")
        if stages >= 3:
            (iteration / "export" / "gguf").mkdir(parents=True)
            (iteration / "export" / "gguf" / f"{module}-chat-F16.gguf").write_bytes(b"GGUF")
            entry["gguf_bundle"] = str(iteration / "export" / "gguf")
        outputs["modules"][module] = entry
    report = attempt / "report" / "report_html"
    report.parent.mkdir(parents=True)
    report.write_text("<html></html>")
    outputs["report"] = str(report)
    return outputs


def test_view_links_the_runbook_layout_onto_the_artifacts(tmp_path: Path) -> None:
    outputs = _attempt(tmp_path, "mongars-1", ["api", "training"])
    save_state(tmp_path, "x", {"status": "succeeded"}, outputs)

    assert (tmp_path / "french_datasets" / "instruction" / "train.jsonl").is_file()
    for module in ("api", "training"):
        internal = tmp_path / "internal_datasets" / module
        assert (internal / "train.jsonl").read_text().count("\n") == 2
        assert (internal / "val.jsonl").is_file()
        assert (tmp_path / module / "adapter" / "adapter_config.json").is_file()
        assert (tmp_path / module / "mntp" / "metrics.json").is_file()
        assert (tmp_path / module / "simcse").is_dir()
        assert (tmp_path / module / "gguf" / f"{module}-chat-F16.gguf").read_bytes() == b"GGUF"
        # Links, relative, never copies: the run folder can move and weights exist once.
        link = tmp_path / module / "gguf"
        assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    # The report is a copy with an .html name: a link to KFP's extension-less "report_html" would
    # open as plain text in a browser.
    report = tmp_path / "report.html"
    assert report.is_file() and not report.is_symlink()
    assert report.read_text() == Path(outputs["report"]).read_text()


def test_state_carries_the_runbook_fields_next_to_todays(tmp_path: Path) -> None:
    outputs = _attempt(tmp_path, "mongars-1", ["api"])
    save_state(tmp_path, "x", {"status": "succeeded"}, outputs)
    state = load_state(tmp_path)
    module = state["modules"]["api"]
    assert module["sft_adapter"] == outputs["modules"]["api"]["sft_adapter"]  # today's field
    assert state["french_datasets_dir"] == str(tmp_path / "french_datasets")
    assert state["internal_datasets_dir"] == str(tmp_path / "internal_datasets")
    assert module["train_path"] == str(tmp_path / "internal_datasets" / "api" / "train.jsonl")
    assert (module["train_count"], module["val_count"]) == (2, 1)
    assert module["adapter_path"] == str(tmp_path / "api" / "adapter")
    assert module["current_model_dir"] == str(tmp_path / "api" / "simcse")
    assert Path(module["current_model_dir"]).is_dir()


def test_partial_run_points_current_model_at_the_adapter(tmp_path: Path) -> None:
    outputs = _attempt(tmp_path, "mongars-1", ["api"], stages=1)
    save_state(tmp_path, "x", {"status": "succeeded"}, outputs)
    module = load_state(tmp_path)["modules"]["api"]
    assert module["current_model_dir"] == module["adapter_path"] != ""
    assert module["mntp_dir"] == module["gguf_dir"] == ""
    assert not (tmp_path / "api" / "gguf").exists()


def test_a_new_attempt_replaces_the_view_and_drops_what_it_did_not_make(tmp_path: Path) -> None:
    save_state(tmp_path, "x", {}, _attempt(tmp_path, "mongars-1", ["api", "old"]))
    second = _attempt(tmp_path, "mongars-2", ["api"], stages=1)
    save_state(tmp_path, "x", {}, second)
    assert Path(second["modules"]["api"]["sft_adapter"]).name == "adapter"
    assert (tmp_path / "api" / "adapter").resolve() == (
        Path(second["modules"]["api"]["sft_adapter"]) / "adapter"
    )
    assert not (tmp_path / "api" / "gguf").exists() and not (tmp_path / "api" / "mntp").exists()
    assert not (tmp_path / "old").exists() and not (tmp_path / "internal_datasets" / "old").exists()
    # The first attempt's artifacts are untouched: only links were removed.
    assert (tmp_path / "kfp" / "mongars-1" / "for-loop-1-iteration-1" / "export" / "gguf").is_dir()


def test_failed_attempt_keeps_the_last_finished_view(tmp_path: Path) -> None:
    save_state(tmp_path, "x", {"status": "succeeded"}, _attempt(tmp_path, "mongars-1", ["api"]))
    save_state(tmp_path, "x", {"status": "failed"}, None)
    state = load_state(tmp_path)
    assert [entry["status"] for entry in state["history"]] == ["succeeded", "failed"]
    assert (tmp_path / "api" / "gguf").is_symlink()
    assert state["modules"]["api"]["gguf_dir"] == str(tmp_path / "api" / "gguf")


def test_module_named_like_a_run_folder_gets_its_own_name(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "run.log").write_text("kept")
    save_state(tmp_path, "x", {}, _attempt(tmp_path, "mongars-1", ["logs"]))
    assert module_view_name("logs") == "logs_module"
    assert (tmp_path / "logs_module" / "adapter").is_symlink()
    assert (tmp_path / "logs" / "run.log").read_text() == "kept"


def test_never_replaces_a_real_folder_or_reaches_outside(tmp_path: Path) -> None:
    outputs = _attempt(tmp_path, "mongars-1", ["api"])
    (tmp_path / "french_datasets").mkdir()
    (tmp_path / "french_datasets" / "mine.txt").write_text("user data")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "keep").symlink_to(tmp_path)
    links = refresh_layout(tmp_path, outputs, previous_links=["../" + outside.name + "/keep"])
    assert "french_datasets" not in links and "api/gguf" in links
    assert (tmp_path / "french_datasets" / "mine.txt").read_text() == "user data"
    assert (outside / "keep").is_symlink()


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[]", b'{"version": 99}'])
def test_unreadable_state_advises_rebuilding_with_build_datasets(
    tmp_path: Path, content: bytes
) -> None:
    (tmp_path / "state.json").write_bytes(content)
    with pytest.raises(MongarsError) as caught:
        load_state(tmp_path)
    message = str(caught.value)
    assert "--build-datasets" in message and "\n" not in message
    aside = set_aside_unreadable_state(tmp_path)
    assert aside is not None and aside.read_bytes() == content
    assert load_state(tmp_path) == {}


def test_readable_state_is_never_set_aside(tmp_path: Path) -> None:
    save_state(tmp_path, "x", {"status": "failed"}, None)
    assert set_aside_unreadable_state(tmp_path) is None
    assert json.loads((tmp_path / "state.json").read_text())["run_id"] == "x"


def test_report_copy_replaces_an_older_report_link(tmp_path: Path) -> None:
    outputs = _attempt(tmp_path, "mongars-1", ["api"])
    (tmp_path / "report.html").symlink_to(Path(outputs["report"]))
    save_state(tmp_path, "x", {}, outputs)
    assert not (tmp_path / "report.html").is_symlink()
    assert Path(outputs["report"]).read_text() == "<html></html>"  # the artifact is untouched
