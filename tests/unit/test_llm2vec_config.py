"""The llm2vec config: bad values refused, and the mapping of upstream LLM2Vec JSON configs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from monGARS.mlops.configs import config_to_dict, load_config
from monGARS.mlops.errors import ConfigError, MongarsError
from monGARS.mlops.training.llm2vec.config import TINY_LLM2VEC_OVERRIDES, Llm2VecConfig
from monGARS.mlops.training.llm2vec.upstream import (
    load_llm2vec_config,
    log_report,
    upstream_report,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "llm2vec"


def test_defaults_and_tiny_overrides_are_valid() -> None:
    default = load_llm2vec_config({})
    assert default.temperature == 0.05 and default.mask_token_type == "blank"
    assert default.lora_alpha("mntp") == 32  # 2 * r, upstream's rule
    tiny = load_llm2vec_config(TINY_LLM2VEC_OVERRIDES)
    assert tiny.mntp_steps == TINY_LLM2VEC_OVERRIDES["mntp_steps"]
    # A dumped config loads back to the same config (what training_config.json stores).
    assert load_llm2vec_config(config_to_dict(tiny)) == tiny


def test_bad_values_are_all_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_llm2vec_config(
            {
                "mlm_probability": 1.5,
                "simcse_batch_size": 1,
                "temperature": 0,
                "mntp_steps": 0,
                "simcse_lora_dropout": 1.0,
                "mask_token_type": "unk",
                "text_sources": "instruction,instruction",
                "mntp_learning_rate": "fast",
            }
        )
    message = str(caught.value)
    assert "\n" not in message
    # Type errors come first (load_config stops before semantic checks when types are wrong).
    assert "mask_token_type" in message and "mntp_learning_rate" in message
    with pytest.raises(ConfigError) as caught:
        load_llm2vec_config(
            {
                "mlm_probability": 1.5,
                "simcse_batch_size": 1,
                "temperature": 0,
                "mntp_steps": 0,
                "simcse_lora_dropout": 1.0,
                "text_sources": "instruction,instruction",
            }
        )
    problems = caught.value.problems
    for field in (
        "mlm_probability",
        "simcse_batch_size",
        "temperature",
        "mntp_steps",
        "simcse_lora_dropout",
        "text_sources",
    ):
        assert any(p.startswith(field) for p in problems), (field, problems)


def test_unknown_stage_key_refused() -> None:
    with pytest.raises(ConfigError, match="mlm_prob: unknown field"):
        load_llm2vec_config({"mlm_prob": 0.2})


def test_upstream_mntp_and_simcse_configs_map_onto_fields(caplog: pytest.LogCaptureFixture) -> None:
    mntp = FIXTURES / "mntp_mistral.json"
    simcse = FIXTURES / "simcse_llama3.json"
    config = load_llm2vec_config({"mntp_config": str(mntp), "simcse_config": str(simcse)})
    # MNTP file.
    assert config.mlm_probability == 0.8
    assert config.mntp_batch_size == 32
    assert config.mntp_gradient_accumulation_steps == 1
    assert config.mntp_max_seq_length == 512
    assert config.mntp_steps == 1000
    assert config.mntp_lora_r == 16
    assert config.data_collator_type == "all_mask"
    # SimCSE file.
    assert config.simcse_dropout == 0.3
    assert config.temperature == pytest.approx(1 / 20)
    assert config.simcse_learning_rate == 3e-5
    assert config.simcse_batch_size == 128
    assert config.simcse_max_seq_length == 128
    assert config.seed == 42
    assert config.dtype == "bfloat16"
    assert config.gradient_checkpointing is True

    report = upstream_report(config)
    assert report.unknown == ["simcse.wandb_project", "simcse.use_hard_negatives"]
    assert "mntp.model_name_or_path" in report.ignored
    assert "simcse.dataset_file_path" in report.ignored
    assert "flash_attention_2" in report.ignored["mntp.attn_implementation"]
    assert report.mapped["simcse.loss_scale"] == {"field": "temperature", "value": 20}
    assert report.overridden == {}
    flat = report.flat()
    assert flat["upstream_unknown_keys"] == "simcse.wandb_project,simcse.use_hard_negatives"
    assert all(isinstance(v, str) for v in flat.values())

    with caplog.at_level(logging.WARNING):
        log_report(report)
    assert "simcse.wandb_project" in caplog.text


def test_stage_keys_win_over_upstream_and_are_reported() -> None:
    config = load_llm2vec_config(
        {
            "simcse_config": str(FIXTURES / "simcse_llama3.json"),
            "simcse_batch_size": 16,
            "temperature": 0.1,
        }
    )
    assert config.simcse_batch_size == 16 and config.temperature == 0.1
    report = upstream_report(config)
    assert report.overridden["simcse_batch_size"] == {"upstream": 128, "used": 16}
    assert report.overridden["temperature"]["used"] == 0.1


def test_config_built_without_the_loader_reports_unapplied_upstream_values() -> None:
    # load_config alone does not read the file: the report says so instead of staying silent.
    config = load_config(Llm2VecConfig, {"simcse_config": str(FIXTURES / "simcse_llama3.json")})
    report = upstream_report(config)
    assert report.overridden["simcse_batch_size"] == {"upstream": 128, "used": 64}


def test_trailing_comma_upstream_file_and_inline_json_are_accepted() -> None:
    config = load_llm2vec_config({"mntp_config": str(FIXTURES / "mntp_qwen2_trailing_comma.json")})
    assert config.data_collator_type == "default"
    assert config.attn_implementation == "eager"
    assert config.dtype == "float16"
    report = upstream_report(config)
    assert report.ignored["mntp.dataloader_num_workers"]
    inline = load_llm2vec_config({"simcse_config": json.dumps({"loss_scale": 50, "lora_r": 4})})
    assert inline.temperature == pytest.approx(0.02) and inline.simcse_lora_r == 4


def test_max_steps_and_stop_after_n_steps_take_the_smaller_positive() -> None:
    config = load_llm2vec_config(
        {"mntp_config": {"max_steps": -1, "stop_after_n_steps": 300, "learning_rate": 1e-4}}
    )
    assert config.mntp_steps == 300 and config.mntp_learning_rate == 1e-4
    config = load_llm2vec_config({"simcse_config": {"max_steps": 50, "stop_after_n_steps": 300}})
    assert config.simcse_steps == 50


def test_settings_of_the_other_phase_and_warnings_are_reported() -> None:
    config = load_llm2vec_config(
        {
            "simcse_config": {
                "mlm_probability": 0.3,
                "bidirectional": False,
                "loss_class": "CosineLoss",
            }
        }
    )
    report = upstream_report(config)
    assert config.mlm_probability is None  # not applied from the SimCSE file (family default)
    assert "MNTP" in report.ignored["simcse.mlm_probability"]
    assert any("bidirectional" in w for w in report.warnings)
    assert any("CosineLoss" in w for w in report.warnings)


def test_bad_upstream_values_name_the_upstream_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_llm2vec_config(
            {
                "mntp_config": {"lora_r": "sixteen", "mask_token_type": "mask2"},
                "simcse_config": {"loss_scale": -5},
            }
        )
    message = str(caught.value)
    assert "mntp_lora_r (from mntp_config key 'lora_r')" in message
    assert "mask_token_type (from mntp_config key 'mask_token_type')" in message
    with pytest.raises(ConfigError, match=r"temperature \(from simcse_config key 'loss_scale'\)"):
        load_llm2vec_config({"simcse_config": {"loss_scale": -5}})


def test_unreadable_upstream_sources_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(MongarsError, match=r"mntp_config: .* not found"):
        load_llm2vec_config({"mntp_config": str(tmp_path / "missing.json")})
    broken = tmp_path / "broken.json"
    broken.write_text('{"lora_r": 16', encoding="utf-8")
    with pytest.raises(MongarsError, match=r"simcse_config .* not valid JSON"):
        load_llm2vec_config({"simcse_config": str(broken)})
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(MongarsError, match="JSON object"):
        load_llm2vec_config({"mntp_config": str(listing)})
    with pytest.raises(ConfigError, match="mntp_config: expected a JSON file path or a mapping"):
        load_llm2vec_config({"mntp_config": 12})


def test_contrastive_mode_picks_the_phases_after_mntp() -> None:
    auto = load_llm2vec_config({"min_supervised_pairs": 8})
    assert auto.contrastive_mode == "auto"
    assert auto.contrastive_phases(8) == ["supervised"]
    assert auto.contrastive_phases(7) == ["simcse"]
    for mode, phases in (
        ("unsupervised", ["simcse"]),
        ("supervised", ["supervised"]),
        ("both", ["simcse", "supervised"]),
    ):
        config = load_llm2vec_config({"contrastive_mode": mode})
        assert config.contrastive_phases(0) == config.contrastive_phases(10_000) == phases
    assert load_llm2vec_config({}).lora_alpha("supervised") == 32


def test_auto_runs_the_phase_of_the_upstream_config_given() -> None:
    """The runbook's --simcse-config is a SimCSE recipe: auto runs SimCSE with it, however many
    retrieval pairs there are, instead of mapping it onto a phase that never runs."""
    simcse = {"simcse_config": {"stop_after_n_steps": 4}}
    supervised = {"supervised_config": {"max_steps": 4}}
    expected = (
        ({}, 16, ["supervised"], "16 retrieval training pairs"),
        ({}, 15, ["simcse"], "15 retrieval training pairs, fewer than min_supervised_pairs 16"),
        (simcse, 10_000, ["simcse"], "simcse_config given"),
        (supervised, 0, ["supervised"], "supervised_config given"),
        ({**simcse, **supervised}, 0, ["simcse", "supervised"], "simcse_config and supervised_"),
        ({"mntp_config": {"lora_r": 4}}, 20, ["supervised"], "20 retrieval training pairs"),
        ({"simcse_config": {}}, 20, ["supervised"], "20 retrieval training pairs"),  # the default
    )
    for values, pairs, phases, reason in expected:
        config = load_llm2vec_config(values)
        assert config.contrastive_phases(pairs) == phases, values
        assert config.auto_contrastive_mode(pairs)[1].startswith(reason), values
        assert config.simcse_steps == (4 if values.get("simcse_config") else 1000)
    # An explicit mode still wins over a given config.
    forced = load_llm2vec_config({**simcse, "contrastive_mode": "supervised"})
    assert forced.contrastive_phases(10_000) == ["supervised"]


def test_bad_supervised_values_are_all_reported() -> None:
    with pytest.raises(ConfigError, match=r"contrastive_mode: expected 'auto' \| 'unsupervised'"):
        load_llm2vec_config({"contrastive_mode": "semi"})
    with pytest.raises(ConfigError) as caught:
        load_llm2vec_config(
            {
                "supervised_temperature": 0,
                "supervised_batch_size": 1,
                "supervised_hard_negatives": -1,
                "min_supervised_pairs": 1,
                "supervised_steps": 0,
                "supervised_learning_rate": 0,
                "supervised_lora_dropout": 1.0,
                "supervised_max_seq_length": 4,
            }
        )
    problems = caught.value.problems
    for field in (
        "supervised_temperature",
        "supervised_batch_size",
        "supervised_hard_negatives",
        "min_supervised_pairs",
        "supervised_steps",
        "supervised_learning_rate",
        "supervised_lora_dropout",
        "supervised_max_seq_length",
    ):
        assert any(p.startswith(field) for p in problems), (field, problems)
    assert "\n" not in str(caught.value)


def test_upstream_supervised_config_maps_onto_the_supervised_fields() -> None:
    config = load_llm2vec_config(
        {
            "simcse_config": str(FIXTURES / "simcse_llama3.json"),
            "supervised_config": str(FIXTURES / "supervised_llama3.json"),
        }
    )
    assert config.supervised_learning_rate == 2e-4
    assert config.supervised_batch_size == 64
    assert config.supervised_max_seq_length == 512
    assert config.supervised_steps == 1000
    assert config.supervised_lora_r == 16
    assert config.supervised_temperature == pytest.approx(1 / 50)
    # The SimCSE file's values stay on the SimCSE fields.
    assert config.temperature == pytest.approx(1 / 20) and config.simcse_learning_rate == 3e-5
    report = upstream_report(config)
    assert report.sources["supervised"].endswith("supervised_llama3.json")
    assert report.mapped["supervised.loss_scale"] == {
        "field": "supervised_temperature",
        "value": 50,
    }
    assert "SIMCSE" in report.ignored["supervised.simcse_dropout"]
    assert config.simcse_dropout == 0.3  # from the SimCSE file, not the supervised one
    for key in ("dataset_name", "num_train_epochs", "output_dir", "peft_model_name_or_path"):
        assert f"supervised.{key}" in report.ignored
    assert "supervised.experiment_name" in report.unknown
    assert report.overridden == {}


def test_a_key_owned_by_two_phases_names_both_files_and_later_files_win() -> None:
    config = load_llm2vec_config(
        {
            "mntp_config": {"loss_scale": 10, "seed": 1},
            "simcse_config": {"seed": 2},
            "supervised_config": {"seed": 3, "mlm_probability": 0.5},
        }
    )
    report = upstream_report(config)
    assert config.seed == 3 and config.mlm_probability is None  # not from the supervised file
    assert report.ignored["mntp.loss_scale"] == (
        "a SIMCSE/SUPERVISED setting; put it in simcse_config or supervised_config"
    )
    assert "MNTP" in report.ignored["supervised.mlm_probability"]
    assert any("using the supervised_config value" in w for w in report.warnings)


def test_bad_upstream_supervised_value_names_its_file_and_key() -> None:
    with pytest.raises(
        ConfigError, match=r"supervised_temperature \(from supervised_config key 'loss_scale'\)"
    ):
        load_llm2vec_config({"supervised_config": {"loss_scale": -5}})
    with pytest.raises(ConfigError, match="supervised_config: expected a JSON file path"):
        load_llm2vec_config({"supervised_config": 3})
    with pytest.raises(ConfigError, match="supervised_config: is an empty path"):
        load_llm2vec_config({"supervised_config": " "})
