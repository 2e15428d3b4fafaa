"""Bad input everywhere a user gives it: a clear one-line error or a counted skip, never a
traceback, nothing half-written that looks complete, nothing touched outside the run's folder.

Two tables: command-line / pipeline-parameter cases run the real ``mongars`` command in a
subprocess inside a sandbox folder; stage cases call the stage library on crafted inputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability.tally import record

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- command line


@dataclass(frozen=True)
class CliCase:
    name: str
    args: tuple[str, ...]
    expect: str  # a fragment of the one-line error
    files: dict[str, bytes] = field(default_factory=dict)  # sandbox files to create first
    runbook: bool = False


def _config(**values: object) -> bytes:
    return json.dumps(values).encode()


MODEL_FILES = {
    "broken/config.json": b"{not json",
    "broken/model.safetensors": b"x",
    "notype/config.json": b'{"hidden_size": 8}',
    "notype/model.safetensors": b"x",
    "noweights/config.json": b'{"model_type": "llama"}',
}

CLI_CASES = [
    CliCase("run id escaping its folder", ("--run-id", "../outside"), "run_id: '../outside'"),
    CliCase("run id with shell metacharacters", ("--run-id", "a;rm -rf ~"), "is not a safe name"),
    CliCase("run id with command substitution", ("--run-id", "$(id)"), "is not a safe name"),
    CliCase("run id with a slash", ("--run-id", "a/b"), "is not a safe name"),
    CliCase("run id with spaces", ("--run-id", "my run"), "is not a safe name"),
    CliCase("empty run id", ("--run-id", ""), "is not a safe name"),
    CliCase(
        "corrupted state.json",
        ("--run-id", "r1"),
        "state.json cannot be read",
        {"runs/r1/state.json": b'{"version": 1, "hist'},
    ),
    CliCase(
        "state.json with invalid UTF-8",
        ("--run-id", "r1"),
        "state.json cannot be read",
        {"runs/r1/state.json": b"\xff\xfe\x00garbage"},
    ),
    CliCase(
        "state.json of another tool",
        ("--run-id", "r1"),
        "is not a monGARS state file",
        {"runs/r1/state.json": b'{"version": 7}'},
    ),
    CliCase("missing --config file", ("--config", "absent.yaml"), "absent.yaml: not found"),
    CliCase(
        "malformed --config YAML",
        ("--config", "c.yaml"),
        "not valid YAML/JSON",
        {"c.yaml": b"lora_r: [1, 2\n"},
    ),
    CliCase(
        "--config that is a list",
        ("--config", "c.yaml"),
        "expected a mapping",
        {"c.yaml": b"- 1\n- 2\n"},
    ),
    CliCase(
        "--config with invalid UTF-8",
        ("--config", "c.yaml"),
        "cannot be read",
        {"c.yaml": b"lora_r: \xff\xfe\n"},
    ),
    CliCase(
        "truncated --mntp-config JSON",
        ("--mntp-config", "m.json"),
        "not valid YAML/JSON",
        {"m.json": b'{"mlm_probability": 0.2, "lora_r":'},
    ),
    CliCase("missing --simcse-config", ("--simcse-config", "s.json"), "s.json: not found"),
    CliCase("LoRA rank zero", ("--lora-r", "0"), "sft.lora_r: must be >= 1"),
    CliCase("negative learning rate", ("--learning-rate", "-1"), "sft.learning_rate: must be > 0"),
    CliCase("LoRA dropout above one", ("--lora-dropout", "1.5"), "sft.lora_dropout"),
    CliCase("zero batch size", ("--batch-size", "0"), "sft.batch_size"),
    CliCase("negative epochs", ("--epochs", "-2"), "sft.epochs"),
    CliCase("validation split of 1.5", ("--val-split", "1.5"), "build_datasets.val_split"),
    CliCase("unknown export method", ("--export-method", "q9_z"), "export_method"),
    CliCase("unknown quant type", ("--quant-types", "q8_0,q7_x"), "quant_types"),
    CliCase("negative VRAM budget", ("--vram-budget-mb", "-5"), "sft.vram_budget_mb"),
    CliCase(
        "several bad values reported at once",
        ("--lora-r", "0", "--learning-rate", "-1", "--val-split", "2"),
        "(3 problems)",
    ),
    CliCase(
        "unknown sft hyperparameter in --config",
        ("--config", "c.json"),
        "sft.colour: unknown field",
        {"c.json": _config(sft_config={"colour": "red"})},
    ),
    CliCase(
        "wrong-typed sft hyperparameter in --config",
        ("--config", "c.json"),
        "sft.max_seq_length: expected int",
        {"c.json": _config(sft_config={"max_seq_length": "long"})},
    ),
    CliCase(
        "unknown target module",
        ("--config", "c.json"),
        "target_modules",
        {"c.json": _config(sft_config={"target_modules": ["q_proj", "not a module!"]})},
    ),
    CliCase(
        "source without a uri",
        ("--config", "c.json"),
        "sources[0]",
        {"c.json": _config(datasets_config={"sources": [{"kind": "instruction"}]})},
    ),
    CliCase(
        "source with an unknown adapter",
        ("--config", "c.json"),
        "sources[0]",
        {
            "c.json": _config(
                datasets_config={
                    "sources": [{"uri": "x.jsonl", "kind": "instruction", "adapter": "?"}]
                }
            )
        },
    ),
    CliCase(
        "sources given as broken JSON text",
        ("--config", "c.json"),
        "sources: not valid JSON",
        {"c.json": _config(datasets_config={"sources": "[{"})},
    ),
    CliCase(
        "module map without '='",
        ("--config", "c.json"),
        "module_map[0]",
        {"c.json": _config(datasets_config={"module_map": ["training"]})},
    ),
    CliCase(
        "unknown llm2vec key",
        ("--config", "c.json"),
        "llm2vec.",
        {"c.json": _config(llm2vec_config={"warp_speed": 9})},
    ),
    CliCase(
        "RAFT with a single document",
        ("--raft", "--config", "c.json"),
        "raft.num_documents",
        {"c.json": _config(raft_config={"num_documents": 1})},
    ),
    CliCase(
        "non-existent base model folder",
        ("--base-model", "./no/such/model"),
        "base_model: ./no/such/model does not exist",
    ),
    CliCase(
        "base model folder with a broken config",
        ("--base-model", "./broken"),
        "config.json is not valid JSON",
        MODEL_FILES,
    ),
    CliCase(
        "base model config without model_type",
        ("--base-model", "./notype"),
        "has no model_type",
        MODEL_FILES,
    ),
    CliCase(
        "base model folder without weights",
        ("--base-model", "./noweights"),
        "has no weights",
        MODEL_FILES,
    ),
    CliCase(
        "runbook sft without --base-model",
        ("--run-id", "x", "--sft"),
        "--base-model: required",
        runbook=True,
    ),
    CliCase(
        "runs root that is a file",
        ("--runs-root", "afile", "--run-id", "r1"),
        "cannot write",
        {"afile": b"not a folder"},
    ),
]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _write_files(case: CliCase, sandbox: Path) -> None:
    for relative, content in case.files.items():
        target = sandbox / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def _run_cli(case: CliCase, sandbox: Path) -> subprocess.CompletedProcess[str]:
    if case.runbook:
        command = [sys.executable, str(REPO / "mongars_multistage_pipeline.py"), *case.args]
    else:
        command = [sys.executable, "-m", "monGARS.cli", "run", *case.args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        command, cwd=sandbox, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("case", CLI_CASES, ids=[case.name for case in CLI_CASES])
def test_command_line_refuses_bad_input(case: CliCase, tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    held = False
    try:
        _write_files(case, sandbox)
        before = _snapshot(sandbox)
        result = _run_cli(case, sandbox)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
        assert case.expect in lines[0], lines[0]
        after = _snapshot(sandbox)
        created = set(after) - set(before)
        assert not created, f"files written by a refused run: {sorted(created)[:5]}"
        assert after == before, "a refused run changed existing files"
        held = True
    finally:
        record(f"cli: {case.name}", held)


# --------------------------------------------------------------------------- stage inputs


def _datasets(sandbox: Path, **sources: bytes) -> tuple[object, Path]:
    """Build datasets from crafted JSONL files plus the shipped corpus (a usable baseline)."""
    from monGARS.mlops.datasets.config import default_sources, load_datasets_config

    specs = list(default_sources())
    for name, content in sources.items():
        path = sandbox / f"{name}.jsonl"
        path.write_bytes(content)
        specs.append({"uri": str(path), "kind": "instruction", "name": name})
    config = load_datasets_config({"sources": specs, "progress": False})
    return config, sandbox / "out"


def _summary_of(out: Path, name: str) -> dict:
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return next(source for source in summary["sources"] if source["name"] == name)


GOOD = {
    "instruction": "Explique ce qu'est un tokenizer.",
    "output": "Il découpe le texte en tokens.",
}


def _line(record: dict) -> bytes:
    return (json.dumps(record, ensure_ascii=False) + "\n").encode()


def _counted(name: str, content: bytes, reason: str | None) -> Callable[[Path], None]:
    """A source whose bad rows must be counted (by ``reason``) while the build succeeds."""

    def check(sandbox: Path) -> None:
        from monGARS.mlops.datasets.build import build_datasets

        config, out = _datasets(sandbox, **{name: content})
        build_datasets(config, out)
        stats = _summary_of(out, name)
        if reason is None:  # nothing to read: an empty source is counted as such, no crash
            assert stats["read"] == 0 and stats["kept"] == 0, stats
        else:
            assert stats["dropped"].get(reason, 0) >= 1, stats

    return check


def _refused(action: Callable[[Path], None], fragment: str) -> Callable[[Path], None]:
    """An input that must be refused with a one-line MongarsError naming ``fragment``."""

    def check(sandbox: Path) -> None:
        from monGARS.mlops.errors import MongarsError

        with pytest.raises(MongarsError) as caught:
            action(sandbox)
        message = str(caught.value)
        assert "\n" not in message and fragment in message, message

    return check


def _only_bad_sources(sandbox: Path) -> None:
    from monGARS.mlops.datasets.build import build_datasets
    from monGARS.mlops.datasets.config import load_datasets_config

    (sandbox / "empty.jsonl").write_bytes(b"")
    (sandbox / "english.jsonl").write_bytes(
        _line({"instruction": "What is the capital of France?", "output": "Paris is the capital."})
    )
    config = load_datasets_config(
        {
            "sources": [
                {"uri": str(sandbox / "empty.jsonl"), "kind": "instruction", "name": "empty"},
                {"uri": str(sandbox / "english.jsonl"), "kind": "instruction", "name": "english"},
            ],
            "progress": False,
        }
    )
    build_datasets(config, sandbox / "out")


def _bad_conversation(sandbox: Path) -> None:
    from monGARS.mlops.datasets.build import build_datasets
    from monGARS.mlops.datasets.config import default_sources, load_datasets_config

    path = sandbox / "conv.jsonl"
    path.write_bytes(
        _line(
            {
                "id": "c1",
                "messages": [
                    {"role": "assistant", "content": "Je commence sans question, ce qui est faux."},
                    {"role": "assistant", "content": "Et je parle deux fois de suite."},
                ],
            }
        )
    )
    specs = [*default_sources(), {"uri": str(path), "kind": "conversation", "name": "conv"}]
    out = sandbox / "out"
    build_datasets(load_datasets_config({"sources": specs, "progress": False}), out)
    stats = _summary_of(out, "conv")
    assert stats["kept"] == 0 and stats["dropped_total"] == 1, stats


def _sft_module_escape(sandbox: Path) -> None:
    from monGARS.mlops.training.sft.train import train_sft

    train_sft({}, sandbox, sandbox, "../../etc", sandbox / "out")


def _sft_missing_base(sandbox: Path) -> None:
    from monGARS.mlops.training.sft.train import train_sft

    train_sft({}, sandbox / "no-model", sandbox, "core", sandbox / "out")


def _gcs_base_model(sandbox: Path) -> None:
    from monGARS.mlops.base_model import fetch_base_model

    fetch_base_model("gs://no-such-bucket-mongars/model", sandbox / "model")


def _unsupported_architecture(sandbox: Path) -> None:
    from monGARS.mlops.export.export import export_module

    model = sandbox / "gpt2"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 8}))
    (model / "model.safetensors").write_bytes(b"x")
    export_module({}, model, None, None, "core", sandbox / "out")


STAGE_CASES: dict[str, Callable[[Path], None]] = {
    "malformed JSONL line": _counted(
        "broken", _line(GOOD) + b'{"instruction": "oops"\n', "malformed_json"
    ),
    "truncated JSONL": _counted("truncated", _line(GOOD)[:30], "malformed_json"),
    "invalid UTF-8 line": _counted("latin1", b'{"instruction": "caf\xe9"}\n', "invalid_utf8"),
    "empty file": _counted("empty", b"", None),
    "a single 50 MB line": _counted(
        "huge",
        _line({"instruction": "Explique " + "très " * 10_000_000, "output": "non"}),
        "too_long",
    ),
    "missing fields": _counted("nofields", _line({"title": "sans instruction"}), "invalid_fields"),
    "wrong-typed fields": _counted(
        "types", _line({"instruction": 42, "output": ["x"]}), "invalid_fields"
    ),
    "conversation with bad role order": _bad_conversation,
    "zero usable records": _refused(_only_bad_sources, "sources: no usable record remains"),
    "module name with ../": _refused(_sft_module_escape, "module"),
    "missing base model for sft": _refused(_sft_missing_base, "base_model"),
    "gs:// base model that does not exist": _refused(_gcs_base_model, "gs://no-such-bucket"),
    "architecture the writer does not cover": _refused(_unsupported_architecture, "export_cmd"),
}


@pytest.mark.parametrize("name", list(STAGE_CASES))
def test_stage_refuses_or_counts_bad_input(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if "gs://" in name:
        request.getfixturevalue("gcs_emulator")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    held = False
    try:
        STAGE_CASES[name](sandbox)
        leftovers = [p for p in sandbox.rglob("*") if ".partial-" in p.name]
        assert not leftovers, f"partial outputs left behind: {leftovers}"
        held = True
    finally:
        record(f"stage: {name}", held)
