"""Run by test_distributed.py as 2 gloo ranks through ``distributed.launch``: contrastive losses
on gathered embeddings must give each parameter the gradient of the global batch."""

from __future__ import annotations

from typing import Any

import torch

from monGARS.mlops.training.common.distributed import (
    current_world,
    gather_rows,
    init,
    shard,
    sum_gradients,
    sum_over_ranks,
)
from monGARS.mlops.training.llm2vec.simcse import info_nce


def _encoder() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(8, 4)


def _inputs(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(count, 8, generator=generator), torch.randn(count, 8, generator=generator)


def run(batch: int, gather: bool) -> dict[str, Any]:
    """Each rank encodes its shard of ``batch`` pairs; returns the summed gradients and loss
    next to one process's on the whole batch. ``gather=False`` is the rank-local loss (the
    in-batch negatives of one shard only), which must not match."""
    world = current_world()
    init(world)
    first, second = _inputs(batch)

    single = _encoder()
    expected_loss = info_nce(single(first), single(second), 0.05)
    expected_loss.backward()

    model = _encoder()
    part = shard(batch, world)
    a, b = model(first[part]), model(second[part])
    if gather:
        a, b = gather_rows(world, a), gather_rows(world, b)
    loss = info_nce(a, b, 0.05) / world.size  # this rank's share of the global loss
    loss.backward()
    params = list(model.parameters())
    sum_gradients(world, params)
    pairs = zip(params, single.parameters(), strict=True)
    return {
        "world_size": world.size,
        "rows": [int(a.shape[0])],
        "loss": sum_over_ranks(world, float(loss)),
        "expected_loss": float(expected_loss),
        "max_grad_error": max(float((p.grad - q.grad).abs().max()) for p, q in pairs),
        "max_grad": max(float(q.grad.abs().max()) for q in single.parameters()),
    }
