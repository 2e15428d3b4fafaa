"""Unsupervised SimCSE: the same batch encoded twice under dropout, each text's two views pulled
together and pushed away from the other texts of the batch (Gao et al. 2021; LLM2Vec step 3).

The loss is InfoNCE over cosine similarities divided by a temperature: for views ``a`` and ``b`` of
a batch, ``cross_entropy(cos(a_i, b_j) / T, target j = i)``. Upstream LLM2Vec writes the same loss
as ``HardNegativeNLLLoss`` with ``loss_scale = 1 / T``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from monGARS.mlops.training.encoder import encode_batch


def info_nce(first: Any, second: Any, temperature: float) -> Any:
    """InfoNCE of row-aligned views [batch, dim]: row i of ``first`` should match row i of ``second``."""
    import torch

    a = torch.nn.functional.normalize(first.float(), dim=-1)
    b = torch.nn.functional.normalize(second.float(), dim=-1)
    logits = a @ b.T / temperature
    targets = torch.arange(logits.shape[0], device=logits.device)
    return torch.nn.functional.cross_entropy(logits, targets)


def _dropout_sites(model: Any) -> list[tuple[Any, str]]:
    """Where dropout rates live: attention modules' ``attention_dropout`` and plain nn.Dropout
    layers of the base model (LoRA's own dropout keeps its lora_dropout)."""
    import torch

    sites: list[tuple[Any, str]] = []
    for name, module in model.named_modules():
        if "lora_dropout" in name:
            continue
        if isinstance(getattr(module, "attention_dropout", None), float | int) and not isinstance(
            module, torch.nn.Dropout
        ):
            sites.append((module, "attention_dropout"))
        if isinstance(module, torch.nn.Dropout):
            sites.append((module, "p"))
    return sites


@contextmanager
def simcse_dropout(model: Any, rate: float) -> Iterator[int]:
    """Set every attention/hidden dropout of ``model`` to ``rate`` for the block, then restore.

    Yields the number of sites changed. The config's ``attention_dropout`` is restored too, so the
    saved encoder carries the base model's value, not the training-time one.
    """
    sites = _dropout_sites(model)
    saved = [getattr(module, attribute) for module, attribute in sites]
    config = getattr(model, "config", None)
    saved_config = getattr(config, "attention_dropout", None)
    try:
        for module, attribute in sites:
            setattr(module, attribute, rate)
        if saved_config is not None:
            config.attention_dropout = rate
        yield len(sites)
    finally:
        for (module, attribute), value in zip(sites, saved, strict=True):
            setattr(module, attribute, value)
        if saved_config is not None:
            config.attention_dropout = saved_config


def make_simcse_step(
    model: Any, tokenizer: Any, batches: Any, *, max_length: int, temperature: float
) -> Any:
    """A closure computing one micro-batch's SimCSE loss: two forward passes, dropout on."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = causal_lm.base_model

    def step() -> Any:
        texts = next(batches)
        first = encode_batch(backbone, tokenizer, texts, max_length)
        second = encode_batch(backbone, tokenizer, texts, max_length)
        return info_nce(first, second, temperature)

    return step
