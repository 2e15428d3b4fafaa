"""The llm2vec stage end to end on the tiny default: SFT model -> MNTP -> SimCSE -> supervised
contrastive -> encoder (``contrastive_mode`` "both", so one run covers every phase).

The datasets fixture (tests/fixtures/llm2vec/datasets) is the project's own: 32 French retrieval
records (11 held out in val.jsonl), a few instruction/conversation records and a "demo" module,
so the before/after comparison does not move when the shipped sample corpus grows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.llm2vec.bidirectional import is_bidirectional
from monGARS.mlops.training.llm2vec.config import TINY_LLM2VEC_OVERRIDES
from monGARS.mlops.training.llm2vec.encoder import load_encoder
from monGARS.mlops.training.llm2vec.instruction import DEFAULT_QUERY_INSTRUCTION
from monGARS.mlops.training.llm2vec.train import train_llm2vec

pytestmark = pytest.mark.integration

DATASETS = Path(__file__).resolve().parents[1] / "fixtures" / "llm2vec" / "datasets"
MODULE = "demo"


@pytest.fixture(scope="module")
def sft_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's SFT output on the tiny model, as the pipeline's sft stage writes it."""
    from monGARS.mlops.training.sft.config import TINY_SFT_OVERRIDES, load_sft_config
    from monGARS.mlops.training.sft.train import train_sft

    out = tmp_path_factory.mktemp("sft") / "out"
    config = load_sft_config({**TINY_SFT_OVERRIDES, "backend": "hf"})
    train_sft(config, tiny_model_dir, DATASETS, MODULE, out)
    return out


@pytest.fixture(scope="module")
def trained(
    tiny_model_dir: Path, sft_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("llm2vec") / "out"
    config = {
        **TINY_LLM2VEC_OVERRIDES,
        "contrastive_mode": "both",
        # An upstream SimCSE config with a key this stage does not know and one it ignores.
        "simcse_config": {"loss_scale": 20, "wandb_project": "fr", "output_dir": "output/x"},
    }
    metadata = train_llm2vec(config, tiny_model_dir, sft_dir, DATASETS, MODULE, out)
    return out, metadata


def test_retrieval_is_measured_before_and_after_on_the_held_out_split(
    trained: tuple[Path, dict[str, Any]],
) -> None:
    # This checks the measurement on the fixture (21 training pairs); the gain itself is asserted
    # on the tiny default by test_llm2vec_gain.py.
    out, metadata = trained
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    retrieval = metrics["retrieval"]
    assert retrieval["split"] == "val" and retrieval["note"] == ""
    assert retrieval["queries"] == 11 and retrieval["passages"] == 22
    # No text or pair the evaluation scores is trained on (the fixture keeps them apart already).
    assert metrics["excluded_eval_texts"] == 0 == metadata["excluded_eval_texts"]
    assert metrics["excluded_eval_pairs"] == 0 == metadata["excluded_eval_pairs"]
    assert metrics["train_pairs"] == 21 == metadata["train_pairs"]
    assert metrics["contrastive_phases"] == ["simcse", "supervised"]
    assert metadata["contrastive_phases"] == "simcse,supervised"
    assert retrieval["after"] == retrieval["after_supervised"] != retrieval["after_simcse"]
    for when in ("before", "after_mntp", "after_simcse", "after"):
        figures = retrieval[when]
        assert 0 < figures["mrr"] <= 1 and 0 <= figures["recall_at_1"] <= figures["recall_at_10"]
    assert metadata["retrieval_after_mrr"] == retrieval["after"]["mrr"]
    assert metadata["retrieval_before_mrr"] == retrieval["before"]["mrr"]


def test_both_adapters_are_merged_into_the_encoder(
    tiny_model_dir: Path, sft_dir: Path, trained: tuple[Path, dict[str, Any]]
) -> None:
    import torch

    from monGARS.mlops.modeling import load_causal_lm
    from monGARS.mlops.training.llm2vec.bidirectional import load_bidirectional

    out, _ = trained
    start = load_causal_lm(tiny_model_dir, sft_dir / "adapter", merge=True)
    encoder = load_bidirectional(out / "encoder", causal_lm=True)
    start_weights, encoder_weights = start.state_dict(), encoder.state_dict()
    assert set(start_weights) == set(encoder_weights)  # plain weights, no LoRA tensors left
    changed = [
        name
        for name, tensor in encoder_weights.items()
        if not torch.equal(tensor, start_weights[name])
    ]
    assert any("q_proj" in name for name in changed) and any(
        "down_proj" in name for name in changed
    )
    assert not any("embed_tokens" in name or "norm" in name for name in changed)
    assert encoder_weights["model.embed_tokens.weight"].shape == (
        start_weights["model.embed_tokens.weight"].shape  # no new embedding rows for the mask
    )


def test_losses_are_recorded_and_every_loss_falls(trained: tuple[Path, dict[str, Any]]) -> None:
    out, metadata = trained
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    mntp, simcse, supervised = metrics["mntp"], metrics["simcse"], metrics["supervised"]
    assert mntp["steps"] == TINY_LLM2VEC_OVERRIDES["mntp_steps"] == len(mntp["losses"])
    assert simcse["steps"] == TINY_LLM2VEC_OVERRIDES["simcse_steps"] == len(simcse["losses"])
    steps = TINY_LLM2VEC_OVERRIDES["supervised_steps"]
    assert supervised["steps"] == steps == len(supervised["losses"])
    for phase in (mntp, simcse, supervised):
        assert all(np.isfinite(phase["losses"]))
        assert phase["loss_last_mean"] < phase["loss_first_mean"]
    assert supervised["pairs"] == 21
    assert supervised["batch_size_used"] == min(21, TINY_LLM2VEC_OVERRIDES["supervised_batch_size"])
    assert metadata["mntp_loss_first"] == mntp["loss_first"]
    assert metadata["simcse_loss_last"] == simcse["loss_last"]
    assert metadata["supervised_loss_last"] == supervised["loss_last"]
    # Flat metadata only: KFP artifact metadata takes scalars.
    assert all(isinstance(v, str | int | float | bool) for v in metadata.values())
    assert metadata["upstream_unknown_keys"] == "simcse.wandb_project"
    assert metadata["upstream_ignored_keys"] == "simcse.output_dir"


def test_output_layout_and_reload_as_bidirectional_encoder(
    trained: tuple[Path, dict[str, Any]],
) -> None:
    from transformers import AutoConfig

    out, metadata = trained
    assert sorted(p.name for p in out.iterdir()) == [
        "encoder",
        "encoder.json",
        "metrics.json",
        "training_config.json",
    ]
    settings = json.loads((out / "encoder.json").read_text(encoding="utf-8"))
    assert settings["pooling"] == "mean" and settings["normalize"] is True
    assert settings["max_length"] == TINY_LLM2VEC_OVERRIDES["supervised_max_seq_length"]
    assert settings["module"] == MODULE and settings["model_type"] == "llama"
    assert settings["query_instruction"] == DEFAULT_QUERY_INSTRUCTION
    # MNTP masked as upstream's Llama configs do (train_configs/mntp/MetaLlama3.json).
    assert metadata["mntp_data_collator_type"] == "default"
    assert metadata["mntp_mlm_probability"] == 0.2
    assert AutoConfig.from_pretrained(out / "encoder").is_causal is False
    assert (out / "encoder" / "tokenizer.json").is_file()
    training = json.loads((out / "training_config.json").read_text(encoding="utf-8"))
    assert training["upstream"]["unknown"] == ["simcse.wandb_project"]
    assert not list(out.parent.glob(".*partial*"))

    encoder = load_encoder(out)
    assert is_bidirectional(encoder.model)
    texts = ["Quelle est la capitale de la France ?", "Paris est la capitale de la France."]
    vectors = encoder.embed(texts)
    assert vectors.shape == (2, encoder.dimension) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The same encoder through its encoder/ folder, and batching does not change embeddings.
    same = load_encoder(out / "encoder").embed(texts, batch_size=1)
    assert np.allclose(same, vectors, atol=1e-5)
    # The stage's own figure is reproducible from the saved encoder.
    from monGARS.mlops.training.common.retrieval_eval import evaluate_retrieval
    from monGARS.mlops.training.llm2vec.data import load_retrieval_eval

    eval_set = load_retrieval_eval(DATASETS, 10)
    again = evaluate_retrieval(
        encoder.embed,
        eval_set.queries,
        eval_set.passages,
        eval_set.relevant,
        embed_queries=encoder.embed_queries,  # queries after the instruction, as the stage did
    )
    assert again["mrr"] == pytest.approx(metadata["retrieval_after_mrr"], abs=1e-6)


def test_bad_inputs_are_refused_before_training(
    tiny_model_dir: Path, sft_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(MongarsError, match=r"sft_dir: .* has no adapter"):
        train_llm2vec(TINY_LLM2VEC_OVERRIDES, tiny_model_dir, tmp_path, DATASETS, MODULE, out)
    with pytest.raises(MongarsError, match="module: 'nope' has no folder"):
        train_llm2vec(TINY_LLM2VEC_OVERRIDES, tiny_model_dir, sft_dir, DATASETS, "nope", out)
    with pytest.raises(MongarsError, match="not a safe name"):
        train_llm2vec(TINY_LLM2VEC_OVERRIDES, tiny_model_dir, sft_dir, DATASETS, "../x", out)
    with pytest.raises(MongarsError, match="fewer than simcse_batch_size"):
        train_llm2vec(
            {
                **TINY_LLM2VEC_OVERRIDES,
                "contrastive_mode": "unsupervised",
                "simcse_batch_size": 10_000,
            },
            tiny_model_dir,
            sft_dir,
            DATASETS,
            MODULE,
            out,
        )
    # Supervised training without retrieval train pairs is refused before any model loads.
    no_pairs = tmp_path / "datasets"
    shutil.copytree(DATASETS, no_pairs)
    (no_pairs / "corpora" / "retrieval" / "train.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(MongarsError, match=r"contrastive_mode: 'supervised' needs .* gives 0"):
        train_llm2vec(
            {**TINY_LLM2VEC_OVERRIDES, "contrastive_mode": "supervised"},
            tiny_model_dir,
            sft_dir,
            no_pairs,
            MODULE,
            out,
        )
    assert not out.exists()
    assert not list(tmp_path.glob(".*partial*"))
