"""SimCSE's dropout switch and its training step, on small torch stand-ins with the module names
and interfaces of a Hugging Face decoder (the real Llama is exercised by the integration tests).

Cheap on purpose: these run once per mutant of ``llm2vec/simcse.py`` (tests/mutation.toml).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from monGARS.mlops.tiny_model import build_tokenizer
from monGARS.mlops.training.common import distributed
from monGARS.mlops.training.llm2vec.encoder import encode_batch
from monGARS.mlops.training.llm2vec.simcse import info_nce, make_simcse_step, simcse_dropout

WIDTH = 8


class _Attention(torch.nn.Module):
    """Returns ``(output, weights)`` and carries ``attention_dropout``, like LlamaAttention."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(WIDTH, WIDTH)
        self.attention_dropout = rate
        self.weights = object()  # the tuple's tail, checked by identity

    def forward(self, hidden: Any) -> tuple[Any, Any]:
        return self.proj(hidden), self.weights


class _Layer(torch.nn.Module):
    """A residual block that records what its sublayers handed back (after any hook)."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.self_attn = _Attention(rate)
        self.mlp = torch.nn.Linear(WIDTH, WIDTH)
        self.seen: dict[str, tuple[Any, ...]] = {}

    def forward(self, hidden: Any) -> Any:
        attended, weights = self.self_attn(hidden)
        self.seen["self_attn"] = (hidden, attended, weights)
        hidden = hidden + attended
        mixed = self.mlp(hidden)
        self.seen["mlp"] = (hidden, mixed)
        return hidden + mixed


class _Decoder(torch.nn.Module):
    """Llama's module names: ``embed_tokens``, ``layers.N.self_attn``, ``layers.N.mlp``.

    Layer 0's rate is an int (some configs say ``0``), layer 1's a float. ``vision.self_attn`` is
    named like an attention module but has no ``attention_dropout``: it is not a dropout site.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed_tokens = torch.nn.Embedding(32, WIDTH)
        self.layers = torch.nn.ModuleList([_Layer(0), _Layer(0.1)])
        self.vision = torch.nn.Module()
        self.vision.self_attn = torch.nn.Linear(WIDTH, WIDTH)
        self.seen_embeddings: Any = None

    def get_input_embeddings(self) -> Any:
        return self.embed_tokens

    def forward(self, input_ids: Any) -> Any:
        hidden = self.embed_tokens(input_ids)
        self.seen_embeddings = hidden
        for layer in self.layers:
            hidden = layer(hidden)
        return hidden


IDS = torch.arange(1, 25).reshape(2, 12)
HIDDEN_SITES = 5  # embed_tokens, then self_attn and mlp of both layers


def _rates(model: _Decoder) -> list[float]:
    return [layer.self_attn.attention_dropout for layer in model.layers]


def _hooks(model: _Decoder) -> int:
    return sum(len(module._forward_hooks) for module in model.modules())


def test_attention_rates_are_set_for_the_block_and_each_restored() -> None:
    model = _Decoder()
    with simcse_dropout(model, 0.3) as places:
        assert _rates(model) == [0.3, 0.3], "the SimCSE rate did not reach every attention module"
        assert places == 2, f"{places} dropout places reported for 2 attention modules"
        assert _hooks(model) == 0, "hidden dropout hooks added with simcse_hidden_dropout 0"
    assert _rates(model) == [0, 0.1], "each module's own attention rate was not restored on exit"
    assert not hasattr(model.vision.self_attn, "attention_dropout")


def test_hidden_dropout_places_are_counted_and_removed_even_after_an_error() -> None:
    model = _Decoder()
    with simcse_dropout(model, 0.3, 0.0) as places:
        assert places == 2, "simcse_hidden_dropout 0 must add no dropout site"
    with pytest.raises(RuntimeError, match="stop"), simcse_dropout(model, 0.3, 0.2) as places:
        assert places == 2 + HIDDEN_SITES, f"{places} places: expected 2 attention + 5 hidden"
        assert _hooks(model) == HIDDEN_SITES
        raise RuntimeError("stop")
    assert _hooks(model) == 0, "hidden dropout hooks left on the model after the block"
    assert _rates(model) == [0, 0.1], "attention rates not restored after an error"


def _assert_dropped_out(seen: Any, clean: Any, rate: float, where: str) -> None:
    """Every element is either zeroed or the clean value scaled by 1 / (1 - rate)."""
    kept = seen != 0
    assert kept.any() and not kept.all(), f"{where}: no dropout applied in train mode"
    scaled = clean[kept] / (1 - rate)
    assert torch.allclose(seen[kept], scaled), f"{where}: kept values are not clean / (1 - p)"


def test_hidden_dropout_drops_every_sublayer_output_in_train_mode_only() -> None:
    model = _Decoder().train()
    torch.manual_seed(1)
    with simcse_dropout(model, 0.0, hidden_rate=0.5):
        model(IDS)
    clean = model.embed_tokens.weight[IDS]
    _assert_dropped_out(model.seen_embeddings, clean, 0.5, "token embeddings")
    for index, layer in enumerate(model.layers):
        entering, attended, weights = layer.seen["self_attn"]
        # ``forward`` called directly bypasses the hooks: the sublayer's own output.
        _assert_dropped_out(attended, layer.self_attn.forward(entering)[0], 0.5, f"attn {index}")
        assert weights is layer.self_attn.weights, "the attention tuple's tail was not kept as is"
        entering, mixed = layer.seen["mlp"]
        _assert_dropped_out(mixed, layer.mlp.forward(entering), 0.5, f"mlp {index}")

    model.eval()
    reference = model(IDS)
    with simcse_dropout(model, 0.0, hidden_rate=0.5):
        assert torch.equal(model(IDS), reference), "hidden dropout applied in eval mode"
    model.train()
    assert torch.equal(model(IDS), reference), "hidden dropout still applied after the block"


# ---------------------------------------------------------------------------- the step


class _Backbone(torch.nn.Module):
    """Token embeddings as last hidden state: deterministic, so both SimCSE views are equal."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.embed = torch.nn.Embedding(vocab, WIDTH)

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        return SimpleNamespace(last_hidden_state=self.embed(input_ids))


class _CausalLm(torch.nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.model = _Backbone(vocab)

    @property
    def base_model(self) -> Any:  # transformers: the backbone under the LM head
        return self.model


class _LoraModel(torch.nn.Module):
    def __init__(self, causal_lm: _CausalLm) -> None:
        super().__init__()
        self.model = causal_lm


class _PeftModel(torch.nn.Module):
    """peft's layout: ``base_model`` is the tuner wrapper, ``get_base_model()`` the causal LM."""

    def __init__(self, causal_lm: _CausalLm) -> None:
        super().__init__()
        self.base_model = _LoraModel(causal_lm)

    def get_base_model(self) -> _CausalLm:
        return self.base_model.model


TEXTS = [
    "Le chat dort sur le canapé.",
    "Il pleut à Paris.",
    "def forward(self, input_ids):",
    "Bonjour !",
    "La réunion commence à neuf heures.",
]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer()


def test_step_is_info_nce_of_the_backbones_pooled_views(tokenizer: Any) -> None:
    causal_lm = _CausalLm(len(tokenizer))
    pooled = encode_batch(causal_lm.model, tokenizer, TEXTS, 16)
    expected = info_nce(pooled, pooled, 0.05).item()
    for model in (causal_lm, _PeftModel(causal_lm)):
        step = make_simcse_step(model, tokenizer, iter([TEXTS]), max_length=16, temperature=0.05)
        loss = step()
        assert loss.item() == pytest.approx(expected, rel=1e-6), (
            f"{type(model).__name__}: loss {loss.item():.6f}, info_nce of the backbone's pooled "
            f"views {expected:.6f}: the step does not encode with the causal LM's backbone"
        )


def test_each_rank_encodes_its_slice_and_returns_half_the_global_loss(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    causal_lm = _CausalLm(len(tokenizer))
    pooled = encode_batch(causal_lm.model, tokenizer, TEXTS, 16)
    global_loss = info_nce(pooled, pooled, 0.05).item()
    received: list[tuple[int, Any]] = []

    def all_gather(world: Any, local: Any) -> Any:
        """Stands in for the all-gather: the other rank's rows around this rank's own."""
        received.append((world.rank, local))
        parts = [pooled[:3], pooled[3:]]
        parts[world.rank] = local
        return torch.cat(parts)

    monkeypatch.setattr(distributed, "gather_rows", all_gather)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, rows in ((0, slice(0, 3)), (1, slice(3, 5))):
        monkeypatch.setenv("RANK", str(rank))
        received.clear()
        batches = iter([TEXTS])
        share = make_simcse_step(causal_lm, tokenizer, batches, max_length=16, temperature=0.05)()
        assert len(received) == 2, "each view must be gathered across ranks"
        for world_rank, local in received:
            assert world_rank == rank and torch.allclose(local, pooled[rows], atol=1e-6), (
                f"rank {rank} did not encode its own slice {rows} of the micro-batch"
            )
        assert share.item() == pytest.approx(global_loss / 2, rel=1e-6), (
            f"rank {rank} returned {share.item():.6f}; its share of the global loss "
            f"{global_loss:.6f} over 2 ranks is {global_loss / 2:.6f}"
        )


def test_max_length_and_temperature_cannot_be_passed_by_position(tokenizer: Any) -> None:
    # Two numbers side by side: swapped positionally, training would silently use 16 as T.
    with pytest.raises(TypeError):
        make_simcse_step(_CausalLm(len(tokenizer)), tokenizer, iter([]), 16, 0.05)  # type: ignore[misc]
