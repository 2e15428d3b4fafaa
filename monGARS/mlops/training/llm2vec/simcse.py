"""Unsupervised SimCSE: the same batch encoded twice under dropout, each text's two views pulled
together and pushed away from the other texts of the batch (Gao et al. 2021; LLM2Vec step 3).

The loss is InfoNCE over cosine similarities divided by a temperature: for views ``a`` and ``b`` of
a batch, ``cross_entropy(cos(a_i, b_j) / T, target j = i)``. Upstream LLM2Vec writes the same loss
as ``HardNegativeNLLLoss`` with ``loss_scale = 1 / T``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from monGARS.mlops.training.llm2vec.encoder import encode_batch


def info_nce(first: Any, second: Any, temperature: float) -> Any:
    """InfoNCE of row-aligned views [batch, dim]: row i of ``first`` matches row i of ``second``."""
    import torch

    a = torch.nn.functional.normalize(first.float(), dim=-1)
    b = torch.nn.functional.normalize(second.float(), dim=-1)
    logits = a @ b.T / temperature
    targets = torch.arange(logits.shape[0], device=logits.device)
    return torch.nn.functional.cross_entropy(logits, targets)


def _attention_dropout_sites(model: Any) -> list[Any]:
    """Attention modules carrying an ``attention_dropout`` rate (Llama, Mistral, Qwen2 have one)."""
    return [
        module
        for name, module in model.named_modules()
        if name.endswith("self_attn")
        and isinstance(getattr(module, "attention_dropout", None), float | int)
    ]


_SUBLAYER = re.compile(r"(^|\.)layers\.\d+\.(self_attn|mlp)$")


def _hidden_dropout_sites(model: Any) -> list[Any]:
    """Where BERT-style hidden dropout goes: the token embeddings and every attention/MLP sublayer
    output, before it is added to the residual stream (these decoders ship no dropout modules)."""
    sites = [model.get_input_embeddings()]
    sites += [module for name, module in model.named_modules() if _SUBLAYER.search(name)]
    return sites


def _dropout_hook(rate: float) -> Any:
    """A forward hook dropping out a module's output (the first item of a tuple) in train mode;
    only registered with ``rate`` > 0."""
    import torch

    def hook(module: Any, _inputs: Any, output: Any) -> Any:
        if not module.training:
            return output
        if isinstance(output, tuple):
            return (torch.nn.functional.dropout(output[0], rate, True), *output[1:])
        return torch.nn.functional.dropout(output, rate, True)

    return hook


@contextmanager
def simcse_dropout(model: Any, rate: float, hidden_rate: float = 0.0) -> Iterator[int]:
    """Attention dropout at ``rate`` for the block (upstream's ``simcse_dropout``), then off.

    Upstream ``run_simcse.py`` loads the model with ``attention_dropout=simcse_dropout``: dropout
    on attention probabilities only. This reuses each attention module's ``attention_dropout``.
    ``hidden_rate`` > 0 adds what upstream does not: BERT-style dropout (forward hooks) on the
    token embeddings and each attention/MLP sublayer output (``simcse_hidden_dropout``). Only
    active in train mode (the two SimCSE views differ, evaluation is deterministic). On exit every
    rate is restored and the hooks removed: the saved encoder carries the base model's settings.
    Yields the number of places dropout was applied.
    """
    attention = _attention_dropout_sites(model)
    saved = [module.attention_dropout for module in attention]
    sites = _hidden_dropout_sites(model) if hidden_rate > 0 else []
    handles = [site.register_forward_hook(_dropout_hook(hidden_rate)) for site in sites]
    try:
        for module in attention:
            module.attention_dropout = rate
        yield len(attention) + len(handles)
    finally:
        for module, value in zip(attention, saved, strict=True):
            module.attention_dropout = value
        for handle in handles:
            handle.remove()


def make_simcse_step(
    model: Any, tokenizer: Any, batches: Any, *, max_length: int, temperature: float
) -> Any:
    """A closure computing one micro-batch's SimCSE loss: two forward passes, dropout on.

    Data-parallel ranks encode their slice of the global micro-batch and gather every rank's
    embeddings with gradients (``distributed.gather_rows``): the in-batch negatives are the whole
    global batch's, as in one process; each rank returns its share, loss / ranks.
    """
    from monGARS.mlops.training.common.distributed import current_world, gather_rows, shard

    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = causal_lm.base_model
    world = current_world()

    def step() -> Any:
        texts = next(batches)
        mine = texts[shard(len(texts), world)]
        first = gather_rows(world, encode_batch(backbone, tokenizer, mine, max_length))
        second = gather_rows(world, encode_batch(backbone, tokenizer, mine, max_length))
        return info_nce(first, second, temperature) / world.size

    return step
