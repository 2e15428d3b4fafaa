"""The LoRA plumbing both llm2vec phases share: attach, train for N optimizer steps, merge.

Each phase trains a fresh LoRA on the attention and MLP projections and merges it into the weights
before the next phase starts, as upstream LLM2Vec does (MNTP adapter merged under SimCSE's).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.llm2vec.config import LORA_TARGET_MODULES

LOG = logging.getLogger(__name__)


def add_lora(model: Any, r: int, alpha: int, dropout: float) -> Any:
    """Wrap ``model`` in a PEFT LoRA on every projection it has (injected in place)."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [name for name in LORA_TARGET_MODULES if name in present]
    if not targets:
        raise MongarsError(
            f"model: none of {', '.join(LORA_TARGET_MODULES)} found in {type(model).__name__}; "
            "use a Llama, Mistral or Qwen2 model"
        )
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none"
    )
    return get_peft_model(model, config)


def merge_lora(peft_model: Any) -> Any:
    """Fold the LoRA into the base weights and return the plain model."""
    return peft_model.merge_and_unload()


def cycle_batches(texts: Sequence[str], batch_size: int, seed: int) -> Iterator[list[str]]:
    """Endless batches of ``batch_size`` texts, reshuffled (seeded) every pass over the data."""
    if not texts:
        raise MongarsError("text_sources: no training text found; check the datasets artifact")
    rng = random.Random(seed)
    order = list(texts)
    while True:
        rng.shuffle(order)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield order[start : start + batch_size]
        if len(order) < batch_size:
            # Fewer texts than one batch: use them all (SimCSE callers refuse this case earlier).
            yield list(order)


def train_steps(
    model: Any,
    micro_step: Callable[[], Any],
    *,
    steps: int,
    accumulation: int,
    learning_rate: float,
    weight_decay: float,
    max_grad_norm: float,
    phase: str,
    start_step: int = 0,
    optimizer_state: dict[str, Any] | None = None,
    losses: list[float] | None = None,
    on_step: Callable[[int, Any, list[float]], None] | None = None,
) -> list[float]:
    """Run ``steps`` AdamW updates of ``accumulation`` micro-batches each; return the step losses.

    ``micro_step`` computes one micro-batch's loss. A non-finite loss stops the run with a one-line
    error naming the phase, instead of saving a broken encoder. A resumed phase starts at
    ``start_step`` with the saved ``optimizer_state`` and the ``losses`` so far; ``on_step(step,
    optimizer, losses)`` runs after each update (checkpoints).

    Data-parallel ranks (``common/distributed.py``): each rank's ``micro_step`` returns its share
    of the global micro-batch's loss (the shares add up to it), so the step's gradient is the sum
    of the ranks' gradients and its loss the sum of their shares; every rank then takes the same
    optimizer step.
    """
    import torch

    from monGARS.mlops.training.common.distributed import (
        current_world,
        sum_gradients,
        sum_over_ranks,
    )

    world = current_world()

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise MongarsError(f"{phase}: no trainable parameters; the LoRA was not attached")
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    model.train()
    losses = list(losses or [])
    for step in range(start_step, steps):
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(accumulation):
            loss = micro_step()
            (loss / accumulation).backward()
            total += float(loss.detach())
        value = sum_over_ranks(world, total) / accumulation
        if not math.isfinite(value):
            raise MongarsError(
                f"{phase}: loss became {value} at step {step + 1}; lower {phase}_learning_rate"
            )
        sum_gradients(world, params)
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        losses.append(value)
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
            # One line per tenth of the phase: what the local run's progress bar follows.
            LOG.info("%s: step %d/%d, loss %.4g", phase, step + 1, steps, value)
        if on_step is not None:
            on_step(step + 1, optimizer, losses)
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    return losses
