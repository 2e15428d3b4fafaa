"""The whole pipeline through kfp.local on the tiny default: artifacts, caching, partial re-runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from local_runs import FAST, KNOWN_TOKEN, RUN_ID, RecordedRun, task_output_uri

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def first_run(uninterrupted_run: RecordedRun) -> RecordedRun:
    return uninterrupted_run


@pytest.fixture(scope="module")
def runs_root(uninterrupted_run: RecordedRun) -> Path:
    return uninterrupted_run.runs_root


def test_full_run_writes_every_artifact(first_run) -> None:
    outputs = first_run.outputs
    datasets = Path(outputs["datasets"])
    modules = json.loads((datasets / "modules.json").read_text())
    assert len(modules) >= 2
    assert set(outputs["modules"]) == set(modules)
    for name, module in outputs["modules"].items():
        assert module["train_records"] > 0, name
        assert (Path(module["sft_adapter"]) / "adapter" / "adapter_config.json").is_file()
        assert (Path(module["encoder"]) / "encoder.json").is_file()
        files = [Path(path) for path in module["gguf_files"]]
        names = {path.name for path in files}
        assert f"{name}-chat-F16.gguf" in names and f"{name}-chat-Q4_K_M.gguf" in names
        assert all(path.is_file() and path.stat().st_size > 0 for path in files)
    report = Path(outputs["report"]).read_text(encoding="utf-8")
    assert all(name in report for name in modules)
    state = json.loads(first_run.state_file.read_text())
    assert state["run_id"] == RUN_ID and state["history"][-1]["status"] == "succeeded"
    assert "build-datasets" in first_run.executed and not first_run.cached
    # raft is off by default: its GPU task does not run, the CPU stand-in does.
    assert "raft-off" in first_run.executed and "raft" not in first_run.executed
    assert {"evaluate", "promote"} <= set(first_run.executed)


def test_every_module_is_evaluated_and_gated(first_run, runs_root: Path) -> None:
    """evaluate scored the shipped GGUF against the base; promote decided and recorded why."""
    state = json.loads(first_run.state_file.read_text())
    promotion = state["promotion"]
    assert promotion["registry"] == str(runs_root.resolve() / "champions")
    assert sorted(promotion["promoted"] + promotion["rejected"]) == sorted(state["modules"])
    assert len(promotion["lines"]) == len(state["modules"])
    for name, module in state["modules"].items():
        figures = module["evaluation"]
        assert figures["base"]["assistant_nll"] > figures["tuned"]["assistant_nll"], name
        assert figures["hf"]["assistant_nll"] is not None
        decision = module["promotion"]
        assert decision["outcome"] in ("promoted", "rejected")
        assert (decision["outcome"] == "rejected") == bool(decision["reasons"])
        pointer = runs_root / "champions" / name / "champion.json"
        assert pointer.is_file() == (decision["outcome"] == "promoted"), name
    report = Path(first_run.outputs["report"]).read_text(encoding="utf-8")
    assert "<h2>Promotion</h2>" in report and "Evaluation of the files that ship" in report


def test_gguf_loads_and_generates_in_llama_cpp(first_run) -> None:
    from llama_cpp import Llama

    module = next(iter(first_run.outputs["modules"].values()))
    chat = next(p for p in module["gguf_files"] if p.endswith("-chat-Q8_0.gguf"))
    llm = Llama(model_path=chat, n_ctx=256, verbose=False)
    out = llm("Bonjour", max_tokens=4, temperature=0.0)
    assert out["usage"]["completion_tokens"] >= 1


def test_sft_lowered_the_training_loss(first_run) -> None:
    for module in first_run.outputs["modules"].values():
        metrics = json.loads((Path(module["sft_adapter"]) / "metrics.json").read_text())
        assert metrics["train_loss_last"] < metrics["train_loss_first"]


def test_identical_rerun_is_all_cache_hits(first_run, runs_root: Path) -> None:
    from monGARS.deploy.local_run import run_local

    again = run_local(RUN_ID, dict(FAST), runs_root=runs_root)
    # resolve_sources re-reads the sources and promote the champion registry, which outlives
    # runs: both always run, and the report after promote; a run whose files already are the
    # champion publishes nothing new.
    assert set(again.executed) == {"resolve-sources", "promote", "report"}
    assert {"fetch-base-model", "build-datasets", "sft", "llm2vec", "export", "evaluate"} <= set(
        again.cached
    )
    same = {k: v for k, v in again.outputs.items() if k != "report"}
    assert same == {k: v for k, v in first_run.outputs.items() if k != "report"}


def test_changed_sft_parameter_reruns_only_downstream(first_run, runs_root: Path) -> None:
    """A changed sft parameter misses sft's cache and keeps everything upstream of it. Run up to
    sft only: what lies further down depends on sft's new adapter, which the raft test shows."""
    from monGARS.deploy.local_run import run_local

    changed = run_local(RUN_ID, {**FAST, "lora_r": 4}, runs_root=runs_root, last_stage="sft")
    assert {"fetch-base-model", "build-datasets"} <= set(changed.cached)
    assert "build-datasets" not in changed.executed
    assert changed.executed.count("sft") == len(first_run.outputs["modules"]), changed.executed
    assert "report" in changed.executed
    assert changed.outputs["datasets"] == first_run.outputs["datasets"]
    for name, module in changed.outputs["modules"].items():
        before = Path(first_run.outputs["modules"][name]["sft_adapter"]) / "adapter"
        after = Path(module["sft_adapter"]) / "adapter"
        assert json.loads((after / "adapter_config.json").read_text())["r"] == 4, name
        assert (after / "adapter_model.safetensors").read_bytes() != (
            before / "adapter_model.safetensors"
        ).read_bytes(), f"{name}: the rerun's adapter is the cached one"


def test_token_never_reaches_any_written_file(first_run, runs_root: Path) -> None:
    scanned = 0
    for path in runs_root.rglob("*"):
        if path.is_file():
            scanned += 1
            assert KNOWN_TOKEN.encode() not in path.read_bytes(), f"token leaked into {path}"
    assert scanned > 20
    compiled = Path(__file__).resolve().parents[2] / "pipelines" / "mongars.yaml"
    assert KNOWN_TOKEN not in compiled.read_text(encoding="utf-8")


def test_raft_on_hands_the_raft_adapter_to_merge(first_run, runs_root: Path) -> None:
    """raft=true runs RAFT (its branch of the condition) and merge_adapter merges its adapter,
    handed over on the shared cache folder, instead of the SFT one. Run up to the raft stage:
    export takes merge_adapter's output whichever adapter it merged (the first run exports it)."""
    from safetensors.torch import load_file

    from monGARS.deploy.local_run import run_local

    with_raft = run_local(
        RUN_ID,
        {
            **FAST,
            "raft": True,
            "raft_config": {
                "num_examples": 16,  # the 4 steps' examples: only their questions are mined
                "max_steps": 4,
                "eval_steps": 4,
                "max_heldout_examples": 2,
                "eval_max_new_tokens": 8,
            },
        },
        runs_root=runs_root,
        last_stage="raft",
    )
    modules = sorted(first_run.outputs["modules"])
    assert with_raft.executed.count("raft") == with_raft.executed.count("merge-adapter") == 2
    assert "raft-off" not in with_raft.executed and "export" not in with_raft.executed
    assert {"build-datasets", "sft", "llm2vec"} <= set(with_raft.cached)
    history = json.loads(first_run.state_file.read_text())["history"]
    first, latest = history[0], history[-1]
    assert "raft-off" in first["executed_tasks"] and latest["executed_tasks"] == with_raft.executed
    for name in modules:
        merged = Path(task_output_uri(latest, f"merge_adapter-{name}", "merged"))
        before = Path(task_output_uri(first, f"merge_adapter-{name}", "merged"))
        assert [_merged_from(merged), _merged_from(before)] == ["raft", "sft"], name
        provenance = json.loads((merged / "provenance.json").read_text())
        assert provenance["training_config"]["stage"] == "raft", name
        assert provenance["training_config"]["module"] == name
        assert provenance["metrics"]["steps"] == 4 and provenance["metrics"]["train_examples"] == 16
        raft_weights = load_file(str(merged / "model.safetensors"))
        sft_weights = load_file(str(before / "model.safetensors"))
        assert raft_weights.keys() == sft_weights.keys()
        changed = [k for k in sft_weights if not (raft_weights[k] == sft_weights[k]).all()]
        assert changed, f"{name}: the merged model is the SFT one"


def _merged_from(merged: Path) -> str:
    """The adapter merge_adapter published it merged (its output's metadata, as kfp.local
    recorded it next to the artifact)."""
    output = json.loads((merged.parent / "executor_output.json").read_text())
    return output["artifacts"]["merged"]["artifacts"][0]["metadata"]["adapter_from"]
