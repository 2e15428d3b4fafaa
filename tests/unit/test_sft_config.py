"""SFTConfig: defaults, the tiny overrides, and every bad value refused at once."""

from __future__ import annotations

import pytest

from monGARS.mlops.errors import ConfigError
from monGARS.mlops.training.sft.config import (
    DEFAULT_TARGET_MODULES,
    TINY_SFT_OVERRIDES,
    SFTConfig,
    load_sft_config,
)


def test_defaults_are_valid_and_cluster_sized() -> None:
    config = load_sft_config({})
    assert config == SFTConfig()
    assert (config.lora_r, config.lora_alpha, config.lora_dropout) == (16, 32, 0.05)
    assert config.target_modules == DEFAULT_TARGET_MODULES
    assert config.max_seq_length == 2048
    assert config.max_steps == -1 and config.epochs == 3.0  # docs/sft.md
    assert config.checkpoint_root == ""


def test_tiny_overrides_are_valid() -> None:
    config = load_sft_config(TINY_SFT_OVERRIDES)
    assert config.max_steps == 30 and config.max_seq_length == 256


def test_every_problem_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_sft_config(
            {
                "lora_r": 0,
                "learning_rate": -1e-4,
                "lora_dropout": 1.5,
                "batch_size": 0,
                "max_steps": 0,
                "french_mix_ratio": 1.0,
                "target_modules": [],
                "checkpoint_root": "s3://bucket/x",
            }
        )
    message = str(caught.value)
    assert "\n" not in message
    for field in (
        "lora_r",
        "learning_rate",
        "lora_dropout",
        "batch_size",
        "max_steps",
        "french_mix_ratio",
        "target_modules",
        "checkpoint_root",
    ):
        assert f"{field}:" in message, field
    assert len(caught.value.problems) == 8


def test_types_and_unknown_fields_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load_sft_config({"lora_r": "many", "backend": "tpu", "lr": 1e-3})
    message = str(caught.value)
    assert "lora_r: expected int" in message
    assert "backend: expected" in message
    assert "lr: unknown field" in message


def test_string_values_from_cli_and_kfp_are_coerced() -> None:
    config = load_sft_config(
        {"lora_r": "8", "learning_rate": "1e-3", "target_modules": "q_proj, v_proj"}
    )
    assert config.lora_r == 8 and config.learning_rate == pytest.approx(1e-3)
    assert config.target_modules == ["q_proj", "v_proj"]


def test_epochs_checked_even_when_max_steps_wins() -> None:
    assert load_sft_config({"epochs": 0.5, "max_steps": 5}).max_steps == 5
    for values in ({"epochs": 0}, {"epochs": -2, "max_steps": 5}):
        with pytest.raises(ConfigError, match="epochs: must be > 0"):
            load_sft_config(values)


def test_duplicate_and_malformed_target_modules_refused() -> None:
    with pytest.raises(ConfigError, match="target_modules: lists a module twice"):
        load_sft_config({"target_modules": ["q_proj", "q_proj"]})
    with pytest.raises(ConfigError, match="not a module name"):
        load_sft_config({"target_modules": ["q_proj; rm -rf"]})


def test_checkpoint_roots() -> None:
    assert load_sft_config({"checkpoint_root": "gs://bucket/ckpt"}).checkpoint_root
    assert load_sft_config({"checkpoint_root": "/tmp/ckpt"}).checkpoint_root
    with pytest.raises(ConfigError, match="bucket name"):
        load_sft_config({"checkpoint_root": "gs://"})
