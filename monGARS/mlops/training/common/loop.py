"""The training loop: transformers' Trainer on pre-tokenized chats with our own collator.

The plain Trainer (not trl's SFTTrainer) keeps the label mask from ``chat_data`` exactly what is
trained, and uses only arguments that are the same in the CPU stack (transformers 5.24) and the
CUDA/Unsloth image (transformers <= 5.17): warmup is passed in steps, not as a ratio.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback, TrainingArguments

from monGARS.mlops.training.common.backends import Environment, MemoryPlan
from monGARS.mlops.training.sft.config import SFTConfig

LOG = logging.getLogger(__name__)


class CountingTrainer(Trainer):
    """A Trainer that counts the real (non-padding) tokens it trains on, its time in eval, and the
    optimizer steps this process ran (``optimizer_steps_run``: fewer than ``max_steps`` after a
    real resume; a resume that silently restarted at step 0 would show all of them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trained_tokens = 0
        self.eval_seconds = 0.0
        self.optimizer_steps_run = 0
        self.add_callback(_StepCounter(self))

    def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self.trained_tokens += int(inputs["attention_mask"].sum())
        return super().training_step(model, inputs, *args, **kwargs)

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        super().log(logs, *args, **kwargs)
        # One line per logging step (what the local run's progress bar follows), from rank 0.
        if "loss" in logs and self.is_world_process_zero():
            LOG.info(
                "step %d/%d, loss %.4g", self.state.global_step, self.state.max_steps, logs["loss"]
            )

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        start = time.perf_counter()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.eval_seconds += time.perf_counter() - start

    def final_eval_loss(self) -> float:
        """The eval loss of the trained model: the Trainer's own evaluation when it ran one at the
        last step (``eval_steps`` divides the step count), else a new one: one pass over the eval
        set saved per run. Every rank holds the same log history, so all ranks take the same
        branch of this collective."""
        loss = logged_eval_loss(self.state.log_history, self.state.global_step)
        return loss if loss is not None else self.evaluate()["eval_loss"]


def logged_eval_loss(history: list[dict[str, Any]], step: int) -> float | None:
    """The eval loss logged at ``step`` (the latest such entry), or None when none was."""
    at_step = [e["eval_loss"] for e in history if "eval_loss" in e and e.get("step") == step]
    return at_step[-1] if at_step else None


class _StepCounter(TrainerCallback):
    """Counts ``on_step_end``: called once per optimizer step, after gradient accumulation."""

    def __init__(self, trainer: CountingTrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self.trainer.optimizer_steps_run += 1
        return control


def total_steps(
    config: SFTConfig, train_examples: int, plan: MemoryPlan, world_size: int = 1
) -> int:
    """Optimizer steps of the run, computed the way the Trainer does (``get_total_steps``-style:
    each rank's loader holds ``ceil(batches / world_size)`` micro batches, accelerate's
    ``even_batches`` padding the last round)."""
    if config.max_steps >= 1:
        return config.max_steps
    batches = math.ceil(math.ceil(train_examples / plan.batch_size) / world_size)
    per_epoch = max(math.ceil(batches / plan.gradient_accumulation_steps), 1)
    return math.ceil(config.epochs * per_epoch)


def training_arguments(
    config: SFTConfig,
    plan: MemoryPlan,
    env: Environment,
    backend: str,
    output_dir: Path,
    *,
    steps: int,
    save: bool,
    evaluate: bool,
    world_size: int = 1,
    evaluate_first: bool = False,
) -> TrainingArguments:
    """TrainingArguments of one run; the Trainer's own checkpointing when ``save``.

    ``world_size`` > 1: the Trainer runs as one DDP rank (it reads torchrun's environment); every
    LoRA parameter takes part in each step, so DDP need not search for unused ones.

    ``evaluate_first``: the "before training" evaluation runs inside ``train()`` at step 0
    (``eval_on_start``), after the model is prepared. A ``Trainer.evaluate()`` call before
    ``train()`` marks the model as prepared for evaluation (accelerate ``prepare_model(...,
    evaluation_mode=True)`` sets ``_is_accelerate_prepared``), and ``train()`` then skips the DDP
    wrap: every rank trains alone and the gradients are never averaged (transformers 5.24,
    accelerate 1.15; seen here as diverging ranks).
    """
    extra: dict[str, Any] = {}
    if world_size > 1:
        extra["ddp_find_unused_parameters"] = False
    # Unsloth applies its own gradient checkpointing inside the model.
    trainer_gc = plan.gradient_checkpointing and backend == "hf" and env.cuda
    if trainer_gc:  # passed only when on: 5.24 renamed it, and warns on the old name
        extra["gradient_checkpointing"] = True
        extra["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=plan.batch_size,
        per_device_eval_batch_size=plan.batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=math.ceil(steps * config.warmup_ratio),
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        optim="adamw_torch",
        logging_steps=config.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if evaluate else "no",
        eval_on_start=evaluate and evaluate_first,
        eval_steps=config.eval_steps,
        save_strategy="steps" if save else "no",
        save_steps=config.save_steps,
        save_total_limit=2 if save else None,
        seed=config.seed,
        data_seed=config.seed,
        bf16=env.cuda and env.bf16,
        fp16=env.cuda and not env.bf16,
        use_cpu=not env.cuda,
        report_to="none",
        remove_unused_columns=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **extra,
    )
