"""RaftConfig: defaults, all problems at once, the SFT fields it shares; input refusals."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from monGARS.mlops.errors import ConfigError, MongarsError
from monGARS.mlops.training.raft import cli as raft_cli
from monGARS.mlops.training.raft import train as raft
from monGARS.mlops.training.raft.config import (
    SHARED_SFT_FIELDS,
    TINY_RAFT_OVERRIDES,
    RaftConfig,
    load_raft_config,
)
from monGARS.mlops.training.sft.config import SFTConfig


def test_defaults_and_tiny_overrides_are_valid() -> None:
    config = load_raft_config()
    assert (config.num_documents, config.oracle_probability) == (4, 0.8)
    assert RaftConfig.CONFIG_NAME == "raft"
    tiny = load_raft_config(TINY_RAFT_OVERRIDES)
    assert tiny.max_steps == 40


def test_shared_fields_have_sfts_names_types_and_defaults() -> None:
    raft_fields = {f.name: f for f in dataclasses.fields(RaftConfig)}
    sft_fields = {f.name: f for f in dataclasses.fields(SFTConfig)}
    raft_hints = typing.get_type_hints(RaftConfig)
    sft_hints = typing.get_type_hints(SFTConfig)
    for name in SHARED_SFT_FIELDS:
        assert raft_hints[name] == sft_hints[name], name
        assert raft_fields[name].default == sft_fields[name].default, name
    # The adapter's shape is never configured here: it comes from the SFT output.
    assert not {"lora_r", "lora_alpha", "target_modules"} & set(raft_fields)


def test_to_sft_config_carries_shared_values_and_the_adapter_shape() -> None:
    config = load_raft_config({"learning_rate": 1e-4, "max_steps": 7, "batch_size": 2})
    sft = config.to_sft_config(8, 16, ["q_proj", "v_proj"])
    assert isinstance(sft, SFTConfig)
    assert (sft.learning_rate, sft.max_steps, sft.batch_size) == (1e-4, 7, 2)
    assert (sft.lora_r, sft.lora_alpha, sft.target_modules) == (8, 16, ["q_proj", "v_proj"])
    assert sft.french_mix_ratio == 0.0


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_raft_config(
            {
                "num_documents": 1,
                "oracle_probability": 1.5,
                "num_examples": -1,
                "max_document_chars": 10,
                "max_quotes": 0,
                "max_heldout_examples": 0,
                "eval_max_new_tokens": 0,
                "learning_rate": 0,  # an SFT check, run on the shared field
                "checkpoint_root": "s3://bucket",
            }
        )
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("invalid raft config (9 problems)")
    for field in (
        "num_documents: must be >= 2",
        "oracle_probability: must be between 0 and 1",
        "num_examples",
        "max_document_chars",
        "max_quotes",
        "max_heldout_examples",
        "eval_max_new_tokens",
        "learning_rate",
        "checkpoint_root",
    ):
        assert field in message


def test_unknown_fields_and_wrong_types_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"lora_r: unknown field") as caught:
        load_raft_config({"lora_r": 8, "retrieval_source": "sometimes", "num_documents": "four"})
    assert "retrieval_source: expected" in str(caught.value)
    assert "num_documents: expected int" in str(caught.value)


def test_edge_probabilities_are_accepted() -> None:
    assert load_raft_config({"oracle_probability": 0}).oracle_probability == 0.0
    assert load_raft_config({"oracle_probability": "1"}).oracle_probability == 1.0


# ---------------------------------------------------------------------------- input refusals


def _sft_output(root: Path, adapter_config: dict | str | None, module: str = "m") -> Path:
    adapter = root / "adapter"
    adapter.mkdir(parents=True)
    if adapter_config is not None:
        text = adapter_config if isinstance(adapter_config, str) else json.dumps(adapter_config)
        (adapter / "adapter_config.json").write_text(text, encoding="utf-8")
    (root / "training_config.json").write_text(json.dumps({"module": module}), encoding="utf-8")
    return root


def test_adapter_shape_is_read_from_the_sft_output(tmp_path: Path) -> None:
    sft = _sft_output(tmp_path / "sft", {"r": 8, "lora_alpha": 16, "target_modules": ["v", "q"]})
    adapter, shape = raft.read_adapter_shape(sft, "m")
    assert adapter == sft / "adapter"
    assert shape == {"r": 8, "lora_alpha": 16, "target_modules": ["q", "v"]}


@pytest.mark.parametrize(
    ("adapter_config", "module", "expected"),
    [
        (None, "m", r"sft_dir: .* has no adapter/adapter_config.json"),
        ("{not json", "m", r"sft_dir: .* is not valid JSON"),
        ({"r": 8, "lora_alpha": 16, "target_modules": "all-linear"}, "m", "not a LoRA adapter"),
        ({"r": 8, "lora_alpha": 16, "target_modules": ["q"]}, "other", "module 'm', not 'other'"),
    ],
)
def test_bad_sft_outputs_are_refused_in_one_line(
    tmp_path: Path, adapter_config: dict | str | None, module: str, expected: str
) -> None:
    sft = _sft_output(tmp_path / "sft", adapter_config)
    with pytest.raises(MongarsError, match=expected) as caught:
        raft.read_adapter_shape(sft, module)
    assert "\n" not in str(caught.value)


def test_cli_reports_user_mistakes_as_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--sft", str(tmp_path), "--datasets", str(tmp_path), "--out", str(tmp_path / "o")]
    code = raft_cli.main(["--base-model", str(tmp_path / "none"), "--module", "m", *common])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: base_model: {tmp_path / 'none'} does not exist; give the fetched model folder"
    )
    code = raft_cli.main(["--base-model", str(tmp_path), "--module", "m", "--set", "k", *common])
    assert code == 2 and "--set 'k': expected key=value" in capsys.readouterr().err
    code = raft_cli.main(["--base-model", str(tmp_path), "--module", "../x", *common])
    assert code == 2 and "module: '../x' is not a safe name" in capsys.readouterr().err
    code = raft_cli.main(
        ["--base-model", str(tmp_path), "--module", "m", "--set", "num_documents=1", *common]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: invalid raft config (1 problem): num_documents")
    assert not (tmp_path / "o").exists()
