"""The sft stage config: every hyperparameter of the QLoRA run, validated before any model loads.

Defaults are sized for a real run on a cluster GPU (a 1-8B model, a few thousand module records).
``TINY_SFT_OVERRIDES`` turns them into a run that visibly trains the embedded tiny model on CPU in a
few seconds; ``make run`` and the tests use it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar, Literal

from monGARS.mlops.configs import Checks, load_config
from monGARS.mlops.training.common.distributed import batch_problem

Backend = Literal["auto", "unsloth", "hf"]
Scheduler = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
]

# The attention and MLP projections of Llama/Mistral/Qwen-style decoders: LoRA on all of them is
# the QLoRA paper's recommendation (Dettmers et al. 2023, section 4).
DEFAULT_TARGET_MODULES = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
]

_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

# Small overrides that make the tiny model's loss fall visibly on CPU in seconds.
TINY_SFT_OVERRIDES: dict[str, Any] = {
    "lora_r": 8,
    "lora_alpha": 16,
    "max_steps": 30,
    "learning_rate": 3e-3,
    "lr_scheduler": "constant",
    "warmup_ratio": 0.0,
    "batch_size": 4,
    "gradient_accumulation_steps": 1,
    "max_seq_length": 256,
    "eval_steps": 10,
    "logging_steps": 2,
    "save_steps": 10,
}


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    """Hyperparameters of one module's supervised fine-tuning (LoRA / QLoRA)."""

    CONFIG_NAME: ClassVar[str] = "sft"

    # auto: Unsloth when CUDA and unsloth import, else transformers + peft.
    backend: Backend = "auto"
    # LoRA: r=16, alpha=2r and dropout 0.05 are the usual QLoRA settings for 1-8B models.
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = dataclasses.field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES)
    )
    # Length of training: max_steps wins when >= 1; -1 means "train for `epochs` epochs".
    epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float = 2e-4
    lr_scheduler: Scheduler = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # The global batch of one optimizer step is batch_size * gradient_accumulation_steps, for any
    # number of ranks: each of N ranks takes 1/N of it (micro batches of at most batch_size).
    batch_size: int = 4
    gradient_accumulation_steps: int = 4
    max_seq_length: int = 2048
    seed: int = 42
    # GPU only: MiB the run may use; 0 keeps batch_size/accumulation as given, checkpointing on.
    vram_budget_mb: int = 0
    # Share of French corpus chat records in the training mix (0 = module records only).
    french_mix_ratio: float = 0.2
    eval_steps: int = 50
    logging_steps: int = 10
    save_steps: int = 100
    # Where resumable checkpoints live ("" = none): a local folder or a gs:// prefix.
    checkpoint_root: str = ""
    # Data-parallel ranks: 0 = one per GPU the pod sees (1 on CPU); N > 1 runs N ranks.
    num_processes: int = 0

    def problems(self) -> list[str]:
        check = Checks()
        check.at_least("lora_r", self.lora_r, 1)
        check.positive("lora_alpha", self.lora_alpha)
        check.fraction("lora_dropout", self.lora_dropout)
        check.require(
            bool(self.target_modules),
            "target_modules",
            "give at least one module name (q_proj, ...)",
        )
        for name in self.target_modules:
            check.require(
                bool(_MODULE_NAME.fullmatch(name)),
                "target_modules",
                f"{name!r} is not a module name; use names like q_proj or v_proj",
            )
        check.require(
            len(set(self.target_modules)) == len(self.target_modules),
            "target_modules",
            "lists a module twice; give each name once",
        )
        check.require(
            self.max_steps == -1 or self.max_steps >= 1,
            "max_steps",
            f"must be -1 (train for `epochs`) or >= 1 (got {self.max_steps})",
        )
        # Checked even when max_steps wins: a negative epoch count is a typo worth reporting.
        check.positive("epochs", self.epochs)
        check.positive("learning_rate", self.learning_rate)
        check.fraction("warmup_ratio", self.warmup_ratio)
        check.at_least("weight_decay", self.weight_decay, 0)
        check.positive("max_grad_norm", self.max_grad_norm)
        check.at_least("batch_size", self.batch_size, 1)
        check.at_least("gradient_accumulation_steps", self.gradient_accumulation_steps, 1)
        check.at_least("max_seq_length", self.max_seq_length, 16)
        check.at_least("seed", self.seed, 0)
        check.at_least("vram_budget_mb", self.vram_budget_mb, 0)
        check.fraction("french_mix_ratio", self.french_mix_ratio)
        check.at_least("eval_steps", self.eval_steps, 1)
        check.at_least("logging_steps", self.logging_steps, 1)
        check.at_least("save_steps", self.save_steps, 1)
        check.at_least("num_processes", self.num_processes, 0)
        split = batch_problem(self.batch_size, self.gradient_accumulation_steps, self.num_processes)
        check.require(not split, "batch_size", split.partition(": ")[2])
        root = self.checkpoint_root
        check.require(
            root == "" or root.startswith("gs://") or "://" not in root,
            "checkpoint_root",
            f"{root!r} has an unsupported scheme; give a local folder, a gs:// prefix or ''",
        )
        check.require(
            root != "gs://" and not root.startswith("gs:///"),
            "checkpoint_root",
            "gs:// needs a bucket name (gs://bucket/prefix)",
        )
        return check.found


def load_sft_config(values: dict[str, Any] | None = None) -> SFTConfig:
    """Build an ``SFTConfig`` from a mapping, reporting every problem at once."""
    return load_config(SFTConfig, values)
