"""train_raft on the tiny model: continues the SFT adapter, mines hard negatives, beats SFT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sft_data import MODULE, make_datasets

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.modeling import load_causal_lm
from monGARS.mlops.training.common.backends import (
    Environment,
    LoraSettings,
    MemoryPlan,
    load_for_training,
)
from monGARS.mlops.training.common.loop import CountingTrainer
from monGARS.mlops.training.common.retrieval_eval import cosine_similarity
from monGARS.mlops.training.llm2vec.encoder import load_encoder
from monGARS.mlops.training.raft import train as raft
from monGARS.mlops.training.raft.config import TINY_RAFT_OVERRIDES, load_raft_config
from monGARS.mlops.training.raft.data import load_questions
from monGARS.mlops.training.raft.format import parse_answer
from monGARS.mlops.training.sft.config import TINY_SFT_OVERRIDES
from monGARS.mlops.training.sft.train import train_sft

pytestmark = pytest.mark.integration

CPU = Environment(cuda=False, unsloth=False, unsloth_error="no CUDA device")


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory: pytest.TempPathFactory, sample_corpus_dir: Path) -> Path:
    return make_datasets(tmp_path_factory.mktemp("raft-data"), sample_corpus_dir)


@pytest.fixture(scope="module")
def sft_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, datasets_dir: Path
) -> Path:
    out = tmp_path_factory.mktemp("raft-sft") / "sft"
    train_sft(
        {**TINY_SFT_OVERRIDES, "french_mix_ratio": 0.0, "backend": "hf"},
        tiny_model_dir,
        datasets_dir,
        MODULE,
        out,
        env=CPU,
    )
    return out


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """An llm2vec-layout output (encoder/ + encoder.json) holding the tiny model itself."""
    out = tmp_path_factory.mktemp("raft-encoder")
    shutil.copytree(tiny_model_dir, out / "encoder")
    (out / "encoder.json").write_text(json.dumps({"pooling": "mean", "max_length": 128}))
    return out


def test_raft_training_beats_the_sft_adapter_on_heldout_examples(
    tiny_model_dir: Path, sft_dir: Path, encoder_dir: Path, datasets_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "raft"
    metadata = raft.train_raft(
        TINY_RAFT_OVERRIDES,
        tiny_model_dir,
        sft_dir,
        encoder_dir,
        datasets_dir,
        MODULE,
        out,
        env=CPU,
    )
    assert metadata["stage"] == "raft" and metadata["module"] == MODULE
    assert metadata["distractors"] == "encoder" and metadata["steps"] == 40
    # The point of the stage: held-out RAFT examples are far likelier under the RAFT adapter.
    assert metadata["heldout_loss_raft"] < metadata["heldout_loss_sft"] - 1.0
    assert metadata["train_loss_last"] < metadata["train_loss_first"]
    # 24 module questions + 10 retrieval ones (a 0.3 share of the mix), nothing too long.
    assert metadata["heldout_examples"] == 8 and metadata["train_examples"] == 34
    assert 0.6 <= metadata["train_oracle_rate"] <= 0.95
    assert all(isinstance(v, str | int | float) for v in metadata.values() if v is not None)

    assert sorted(p.name for p in out.iterdir()) == [
        "adapter",
        "heldout_generations.jsonl",
        "loss_curve.html",
        "loss_curve.png",
        "metrics.json",
        "training_config.json",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name != "raft"]  # no partial siblings left
    training = json.loads((out / "training_config.json").read_text())
    assert training["stage"] == "raft" and training["module"] == MODULE
    assert training["adapter_shape"]["r"] == TINY_SFT_OVERRIDES["lora_r"]
    metrics = json.loads((out / "metrics.json").read_text())
    for model in ("sft", "raft"):
        assert metrics[model]["examples"] == 8
        assert set(metrics[model]) >= {"exact_match", "answer_f1", "quote_match", "format_rate"}
    assert metrics["eval_history"][0] == {"step": 0, "eval_loss": metrics["heldout_loss_sft"]}
    assert metrics["eval_history"][-1]["eval_loss"] == metrics["heldout_loss_raft"]
    # The Trainer's own evaluation at step 40 is the final loss: no second pass after train().
    assert [e["step"] for e in metrics["eval_history"]] == [0, 20, 40]

    generations = [json.loads(line) for line in (out / "heldout_generations.jsonl").open()]
    assert len(generations) == 8
    for record in generations:
        assert parse_answer(record["target"]).well_formed
        assert isinstance(record["sft_output"], str) and isinstance(record["raft_output"], str)
        assert len(record["documents"]) == 4

    # The adapter is the SFT adapter trained further: same tensors, new values.
    sft_weights = load_file(sft_dir / "adapter" / "adapter_model.safetensors")
    raft_weights = load_file(out / "adapter" / "adapter_model.safetensors")
    assert sft_weights.keys() == raft_weights.keys()
    assert any(not torch.equal(sft_weights[k], raft_weights[k]) for k in sft_weights)
    assert (out / "adapter" / "adapter_config.json").is_file()


def test_distractors_are_the_encoders_nearest_documents(
    datasets_dir: Path, encoder_dir: Path
) -> None:
    config = load_raft_config({**TINY_RAFT_OVERRIDES, "num_examples": 120})
    train, heldout, counts = raft.prepare_examples(config, datasets_dir, MODULE, encoder_dir)
    assert counts["distractors"] == "encoder" and len(train) == 120
    pool = load_questions(datasets_dir, MODULE, "train", "extractive", 240).documents
    encoder = load_encoder(encoder_dir, device="cpu")
    questions = sorted({e.question for e in train})
    # Questions are read as queries (after the encoder's query instruction), documents plainly.
    similarity = cosine_similarity(encoder.embed_queries(questions), encoder.embed(pool))
    nearest = {}
    for question, row in zip(questions, similarity, strict=True):
        nearest[question] = [pool[i] for i in np.argsort(-row, kind="stable")]
    for example in train:
        distractors = [d for i, d in enumerate(example.documents) if i != example.oracle_index]
        assert example.oracle not in distractors
        ranked = [d for d in nearest[example.question] if d != example.oracle]
        assert set(distractors) == set(ranked[: len(distractors)])
    # Held-out examples draw from the train and val documents together.
    assert counts["heldout_documents"] > counts["train_documents"]
    assert all(
        e.oracle not in [d for i, d in enumerate(e.documents) if i != e.oracle_index]
        for e in heldout
    )


def test_the_sft_adapter_is_continued_exactly(tiny_model_dir: Path, sft_dir: Path) -> None:
    adapter, shape = raft.read_adapter_shape(sft_dir, MODULE)
    lora = LoraSettings(shape["r"], shape["lora_alpha"], 0.0, shape["target_modules"], 0, 64)
    plan = MemoryPlan(1, 1, False, 0, "test")
    model = load_for_training("hf", tiny_model_dir, lora, plan, CPU)
    ids = torch.tensor([[1, 50, 60, 70, 80, 90]])
    fresh = model(input_ids=ids).logits.detach()
    assert raft.load_sft_weights(model, adapter) > 0
    merged = load_causal_lm(tiny_model_dir, adapter, merge=True)
    model.eval()
    continued = model(input_ids=ids).logits.detach()
    expected = merged(input_ids=ids).logits.detach()
    assert torch.allclose(continued, expected, atol=1e-4)
    assert not torch.allclose(fresh, expected, atol=1e-3)


def test_an_adapter_of_another_shape_is_refused(tiny_model_dir: Path, sft_dir: Path) -> None:
    adapter, shape = raft.read_adapter_shape(sft_dir, MODULE)
    lora = LoraSettings(shape["r"] * 2, shape["lora_alpha"], 0.0, shape["target_modules"], 0, 64)
    model = load_for_training("hf", tiny_model_dir, lora, MemoryPlan(1, 1, False, 0, ""), CPU)
    with pytest.raises(MongarsError, match=r"sft_dir: the adapter in .* does not fit the model"):
        raft.load_sft_weights(model, adapter)


def test_a_failed_run_leaves_no_output(
    tiny_model_dir: Path,
    sft_dir: Path,
    datasets_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def crash(self: CountingTrainer, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed mid-training")

    monkeypatch.setattr(CountingTrainer, "train", crash)
    out = tmp_path / "raft"
    with pytest.raises(RuntimeError, match="killed"):
        raft.train_raft(
            {**TINY_RAFT_OVERRIDES, "eval_max_new_tokens": 1},
            tiny_model_dir,
            sft_dir,
            None,
            datasets_dir,
            MODULE,
            out,
            env=CPU,
        )
    assert list(tmp_path.iterdir()) == []


def test_bad_encoder_folder_is_refused_before_training(
    tiny_model_dir: Path, sft_dir: Path, datasets_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(MongarsError, match=r"encoder: .* is neither an llm2vec output"):
        raft.train_raft(
            TINY_RAFT_OVERRIDES,
            tiny_model_dir,
            sft_dir,
            tmp_path,
            datasets_dir,
            MODULE,
            tmp_path / "raft",
            env=CPU,
        )
    with pytest.raises(MongarsError, match="module 'mlops', not 'other'"):
        raft.train_raft(
            TINY_RAFT_OVERRIDES,
            tiny_model_dir,
            sft_dir,
            None,
            datasets_dir,
            "other",
            tmp_path / "raft",
            env=CPU,
        )
    assert not (tmp_path / "raft").exists()
