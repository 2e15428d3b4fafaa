"""Bidirectional attention on transformers 5.x: late tokens reach early positions, padding not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.llm2vec.bidirectional import (
    enable_bidirectional,
    is_bidirectional,
    load_bidirectional,
)

pytestmark = pytest.mark.integration


def _tiny(model_type: str, attn: str) -> Any:
    """A 2-layer random model of one supported family (shapes small, GQA on)."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    classes = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "mistral": (MistralConfig, MistralForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    }
    config_class, model_class = classes[model_type]
    config = config_class(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    config._attn_implementation = attn
    torch.manual_seed(0)
    return model_class(config).eval()


def _hidden(model: Any, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        return model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state


def _late_token_effect(model: Any) -> float:
    """How much position 1 moves when the last token changes (0 under causal attention)."""
    ids = torch.tensor([[5, 9, 13, 17, 21, 25]])
    changed = ids.clone()
    changed[0, -1] = 40
    return (_hidden(model, ids)[0, 1] - _hidden(model, changed)[0, 1]).abs().max().item()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2"])
def test_switch_makes_attention_bidirectional(model_type: str, attn: str) -> None:
    model = _tiny(model_type, attn)
    assert _late_token_effect(model) == 0.0  # causal: the future is invisible
    assert not is_bidirectional(model)
    enable_bidirectional(model)
    assert is_bidirectional(model)
    assert _late_token_effect(model) > 1e-3


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_padding_stays_masked(model_type: str, attn: str) -> None:
    model = enable_bidirectional(_tiny(model_type, attn))
    ids = torch.tensor([[5, 9, 13, 17]])
    padded = torch.tensor([[5, 9, 13, 17, 0, 0, 0]])
    other_padding = torch.tensor([[5, 9, 13, 17, 33, 44, 55]])  # junk under the padding mask
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0]])
    reference = _hidden(model, ids)[0]
    with_padding = _hidden(model, padded, mask)[0, :4]
    with_junk = _hidden(model, other_padding, mask)[0, :4]
    assert torch.allclose(with_padding, reference, atol=1e-5)
    assert torch.allclose(with_junk, reference, atol=1e-5)


def test_batch_of_mixed_lengths_matches_single_sequences() -> None:
    model = enable_bidirectional(_tiny("llama", "sdpa"))
    short, long = [5, 9, 13], [7, 11, 15, 19, 23]
    batch = torch.tensor([[*short, 0, 0], long])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    together = _hidden(model, batch, mask)
    assert torch.allclose(together[0, :3], _hidden(model, torch.tensor([short]))[0], atol=1e-5)
    assert torch.allclose(together[1], _hidden(model, torch.tensor([long]))[0], atol=1e-5)


def test_reload_needs_the_switch_again(tmp_path: Path) -> None:
    from transformers import AutoModel

    model = enable_bidirectional(_tiny("llama", "sdpa"))
    model.save_pretrained(tmp_path / "saved")
    # config.json keeps is_causal=false, but the per-layer flags are rebuilt as True on load:
    # unpadded SDPA batches would silently go back to causal attention.
    plain = AutoModel.from_pretrained(tmp_path / "saved", attn_implementation="sdpa")
    assert plain.config.is_causal is False
    assert not is_bidirectional(plain)
    reloaded = load_bidirectional(tmp_path / "saved")
    assert is_bidirectional(reloaded)
    assert _late_token_effect(reloaded) > 1e-3
    reference = _hidden(model, torch.tensor([[5, 9, 13, 17]]))
    assert torch.allclose(_hidden(reloaded, torch.tensor([[5, 9, 13, 17]])), reference, atol=1e-5)
    as_lm = load_bidirectional(tmp_path / "saved", causal_lm=True)
    assert is_bidirectional(as_lm) and as_lm.get_output_embeddings() is not None


def test_unsupported_family_and_attention_are_refused() -> None:
    from transformers import GPT2Config, GPT2Model

    gpt2 = GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32, n_positions=16))
    with pytest.raises(MongarsError, match="model_type 'gpt2' is not supported"):
        enable_bidirectional(gpt2)
    model = _tiny("llama", "sdpa")
    model.config._attn_implementation = "flex_attention"
    with pytest.raises(MongarsError, match="attn_implementation"):
        enable_bidirectional(model)
