"""The embedded tiny model: built offline, deterministic, a chat template that renders."""

from __future__ import annotations

from pathlib import Path

import pytest

from monGARS.mlops.tiny_model import CHAT_TEMPLATE, build_tiny_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_tiny_model_loads_and_generates(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "llama"
    assert model.config.hidden_size % 256 == 0, "K-quants need rows that are multiples of 256"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Bonjour, qu'est-ce que LoRA ?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text.startswith("<|begin_of_text|><|im_start|>user\nBonjour")
    assert text.endswith("<|im_start|>assistant\n")
    ids = tokenizer("Le modèle est chargé.", return_tensors="pt")
    assert (
        tokenizer.decode(ids["input_ids"][0], skip_special_tokens=True) == "Le modèle est chargé."
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 3
    assert tokenizer.chat_template == CHAT_TEMPLATE


def test_build_is_byte_identical(tmp_path: Path, tiny_model_dir: Path) -> None:
    again = build_tiny_model(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name
