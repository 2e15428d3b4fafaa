"""train_sft on the tiny model: it learns, trains LoRA only, on assistant tokens; its outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from sft_data import MODULE, make_datasets

from monGARS.mlops.training.common.chat_data import IGNORE_INDEX
from monGARS.mlops.training.common.checkpoints import hash_tree
from monGARS.mlops.training.common.loop import CountingTrainer
from monGARS.mlops.training.sft import train as sft
from monGARS.mlops.training.sft.config import TINY_SFT_OVERRIDES, load_sft_config

pytestmark = pytest.mark.integration

SECRET = "hf_SENTINELtokenNEVERwritten0123456789"


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory: pytest.TempPathFactory, sample_corpus_dir: Path) -> Path:
    return make_datasets(tmp_path_factory.mktemp("sft-data"), sample_corpus_dir)


def _expected_targets(datasets_dir: Path) -> set[str]:
    """Every training record's assistant texts, each closed by the end-of-turn token."""
    texts = set()
    paths = [datasets_dir / "modules" / MODULE / "train.jsonl"]
    paths += sorted(datasets_dir.glob("corpora/*/train.jsonl"))
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if "messages" in record:
                messages = record["messages"]
            elif "output" in record:
                messages = [{"role": "assistant", "content": record["output"]}]
            elif "answer" in record:
                content = f"{record['reasoning']}\n\n{record['answer']}"
                messages = [{"role": "assistant", "content": content}]
            else:
                continue
            texts.add(
                "".join(m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant")
            )
    return texts


def test_sft_learns_on_assistant_tokens_and_leaves_the_base_alone(
    tiny_model_dir: Path, datasets_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    base_hash = hash_tree(tiny_model_dir)
    trained_models: list[Any] = []
    real_loader = sft.load_for_training

    def keep_model(*args: Any, **kwargs: Any) -> Any:
        model = real_loader(*args, **kwargs)
        trained_models.append(model)
        return model

    monkeypatch.setattr(sft, "load_for_training", keep_model)
    batches: list[dict[str, torch.Tensor]] = []
    real_step = CountingTrainer.training_step

    def record_step(self: CountingTrainer, model: Any, inputs: dict, *args: Any, **kwargs: Any):
        batches.append({k: v.detach().clone() for k, v in inputs.items()})
        return real_step(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(CountingTrainer, "training_step", record_step)

    out = tmp_path / "out"
    config = load_sft_config(TINY_SFT_OVERRIDES)
    metadata = sft.train_sft(
        config, tiny_model_dir, datasets_dir, MODULE, out, base_model_name="tiny"
    )

    # It learned: train and val loss fall clearly.
    assert metadata["steps"] == 30 and metadata["backend"] == "hf" and metadata["device"] == "cpu"
    assert metadata["train_loss_last"] < metadata["train_loss_first"] - 0.5
    assert metadata["eval_loss_after"] < metadata["eval_loss_before"] - 0.5
    assert metadata["tokens_per_second"] > 0 and metadata["peak_memory_mb"] > 0
    assert metadata["train_records"] == 24 + 6  # 20% French: 6 corpus records with 24 module ones
    assert metadata["val_records"] == 8
    assert all(isinstance(v, str | int | float) for v in metadata.values())

    # What was trained: every row's unmasked tokens are one record's assistant turns + <|im_end|>.
    from monGARS.mlops.modeling import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    expected = _expected_targets(datasets_dir)
    assert len(batches) == 30
    for batch in batches:
        padding = batch["attention_mask"] == 0
        assert (batch["labels"][padding] == IGNORE_INDEX).all()
        for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
            assert tokenizer.decode(ids[labels != IGNORE_INDEX].tolist()) in expected

    # The base weights did not move; every LoRA matrix did.
    (model,) = trained_models
    original = load_file(str(tiny_model_dir / "model.safetensors"))
    base_state = model.get_base_model().state_dict()
    for name, tensor in original.items():
        key = name.replace(".weight", ".base_layer.weight")
        current = base_state.get(key, base_state.get(name))
        assert current is not None, name
        assert torch.equal(current, tensor), name
    assert hash_tree(tiny_model_dir) == base_hash

    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert adapter and all("lora_" in name for name in adapter)
    for name, tensor in adapter.items():
        if "lora_B" in name:  # initialised to zero
            assert tensor.abs().max() > 0, name
    initial = _initial_adapter(tiny_model_dir, config)
    for name, tensor in adapter.items():
        assert not torch.equal(tensor, initial[name]), name

    # Outputs.
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter",
        "loss_curve.html",
        "loss_curve.png",
        "metrics.json",
        "training_config.json",
    ]
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "adapter" / "tokenizer.json").is_file()
    training_config = json.loads((out / "training_config.json").read_text())
    assert training_config["backend"] == "hf" and training_config["base_model"] == "tiny"
    assert training_config["config"]["lora_r"] == 8
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval_loss_before"] == metadata["eval_loss_before"]
    # The Trainer evaluated at the last step (30): that is the final loss, not a second pass.
    assert [e["step"] for e in metrics["eval_history"]] == [0, 10, 20, 30]
    assert metrics["eval_history"][-1]["eval_loss"] == metadata["eval_loss_after"]
    assert len(metrics["loss_history"]) == 16  # step 1, then every 2 steps
    page = (out / "loss_curve.html").read_text()
    assert '<img alt="loss curve" src="data:image/png;base64,iVBOR' in page
    assert page.count("<tr><td>") == len(
        {e["step"] for e in metrics["loss_history"]} | {0, 10, 20, 30}
    )
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*partial*"))

    # The token never reaches an output.
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def _initial_adapter(base_dir: Path, config: Any) -> dict[str, torch.Tensor]:
    """The adapter as get_peft_model initialises it with the run's seed."""
    from peft import get_peft_model_state_dict

    from monGARS.mlops.training.common.backends import Environment, LoraSettings, MemoryPlan
    from monGARS.mlops.training.common.backends import load_for_training as real_load

    lora = LoraSettings(
        config.lora_r,
        config.lora_alpha,
        config.lora_dropout,
        config.target_modules,
        config.seed,
        256,
    )
    model = real_load(
        "hf", base_dir, lora, MemoryPlan(4, 1, False, 0, ""), Environment(False, False)
    )
    return {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}


def test_module_only_training_and_epochs(
    tiny_model_dir: Path, datasets_dir: Path, tmp_path: Path
) -> None:
    """french_mix_ratio=0 trains the module records alone; epochs drive the length."""
    values = {
        **TINY_SFT_OVERRIDES,
        "max_steps": -1,
        "epochs": 2,
        "french_mix_ratio": 0.0,
        "batch_size": 8,
        "target_modules": ["q_proj", "v_proj"],
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.1,
    }
    metadata = sft.train_sft(values, tiny_model_dir, datasets_dir, MODULE, tmp_path / "out")
    assert metadata["train_records"] == 24
    assert metadata["steps"] == 6  # 24 records / 8 per batch * 2 epochs
    # eval_steps (10) does not divide 6: the final loss is a new evaluation of the trained model.
    history = json.loads((tmp_path / "out" / "metrics.json").read_text())["eval_history"]
    assert [e["step"] for e in history] == [0, 6]
    assert history[-1]["eval_loss"] == metadata["eval_loss_after"] < metadata["eval_loss_before"]
    adapter = load_file(str(tmp_path / "out" / "adapter" / "adapter_model.safetensors"))
    assert {name.split(".")[-3] for name in adapter} == {"q_proj", "v_proj"}


def test_empty_val_split_trains_without_evaluation(
    tiny_model_dir: Path, sample_corpus_dir: Path, tmp_path: Path
) -> None:
    data = make_datasets(tmp_path / "data", sample_corpus_dir, train=8, val=0)
    values = {**TINY_SFT_OVERRIDES, "max_steps": 3, "french_mix_ratio": 0.0}
    metadata = sft.train_sft(values, tiny_model_dir, data, MODULE, tmp_path / "out")
    assert metadata["steps"] == 3 and metadata["val_records"] == 0
    assert metadata["eval_loss_before"] is None and metadata["eval_loss_after"] is None
    assert metadata["train_loss_first"] is not None
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["eval_history"] == []
