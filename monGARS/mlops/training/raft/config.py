"""The raft stage config: RAFT example construction plus the sft hyperparameters that apply.

RAFT continues training the module's SFT LoRA adapter, so the adapter's shape (``lora_r``,
``lora_alpha``, ``target_modules``) is read from the SFT output, never configured here. Every other
training hyperparameter has the same name, type and default as in :class:`SFTConfig` (the defaults
are read from it), and :meth:`RaftConfig.to_sft_config` builds the ``SFTConfig`` that the shared
training loop (``loop.training_arguments``, ``loop.total_steps``) takes. ``problems()`` runs
SFTConfig's own checks on those fields, so both stages refuse the same bad values the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from monGARS.mlops.configs import Checks, load_config
from monGARS.mlops.training.sft.config import (
    TINY_SFT_OVERRIDES,
    Backend,
    Scheduler,
    SFTConfig,
    load_sft_config,
)

RetrievalSource = Literal["off", "answer_field", "extractive"]
AbsentAnswer = Literal["memory", "decline"]

_SFT_DEFAULTS = {field.name: field.default for field in dataclasses.fields(SFTConfig)}

# SFTConfig fields RAFT uses with the same meaning. Not here: lora_r, lora_alpha and target_modules
# (fixed by the SFT adapter being continued) and french_mix_ratio (RAFT trains on RAFT examples).
SHARED_SFT_FIELDS = (
    "backend",
    "lora_dropout",
    "epochs",
    "max_steps",
    "learning_rate",
    "lr_scheduler",
    "warmup_ratio",
    "weight_decay",
    "max_grad_norm",
    "batch_size",
    "gradient_accumulation_steps",
    "max_seq_length",
    "seed",
    "vram_budget_mb",
    "eval_steps",
    "logging_steps",
    "save_steps",
    "checkpoint_root",
    "num_processes",
)

# The embedded tiny model on CPU: 40 RAFT steps in ~15 s; held-out loss falls well below the SFT
# adapter's (measured in docs/raft.md). Its byte-level vocabulary spends ~3 characters a token, so
# documents are kept short so k=4 of them and the answer fit its 1024 positions.
TINY_RAFT_OVERRIDES: dict[str, Any] = {
    **{k: v for k, v in TINY_SFT_OVERRIDES.items() if k in SHARED_SFT_FIELDS},
    "max_steps": 40,
    "max_seq_length": 1024,
    "max_document_chars": 200,
    "max_heldout_examples": 8,
    "eval_max_new_tokens": 64,
    "eval_steps": 20,
}


@dataclasses.dataclass(frozen=True)
class RaftConfig:
    """RAFT example construction, evaluation and the training hyperparameters of one module."""

    CONFIG_NAME: ClassVar[str] = "raft"

    # k: documents shown with each question (RAFT paper: 1 oracle + 4 distractors = 5 at test time;
    # 4 keeps prompts of code facts within 2048 tokens).
    num_documents: int = 4
    # P: share of training examples that contain the oracle (the paper finds 0.6-0.8 works best).
    oracle_probability: float = 0.8
    # Training examples to draw; 0 = one per training question. More than the questions cycles
    # through them again with fresh draws (oracle present or not, document order).
    num_examples: int = 0
    # Documents (oracle and distractors) are cut to this many characters.
    max_document_chars: int = 1200
    # Evidence lines quoted from the oracle in each target answer.
    max_quotes: int = 2
    # Retrieval records as questions: off; only those with an "answer" field; or also the rest,
    # with the first positive passage as the (extractive) answer.
    retrieval_source: RetrievalSource = "extractive"
    # Share of retrieval questions in the question mix (the rest are the module's), so a large
    # general corpus does not drown the module's own facts; their passages are distractors anyway.
    retrieval_mix_ratio: float = 0.3
    # Target when the oracle is absent: say so, then answer from memory (RAFT) or decline.
    absent_answer: AbsentAnswer = "memory"
    # Held-out (val split) examples scored for loss and greedy answers, for the SFT and RAFT model.
    max_heldout_examples: int = 64
    eval_max_new_tokens: int = 256
    eval_batch_size: int = 8
    # Texts per batch when the llm2vec encoder embeds questions and documents.
    encoder_batch_size: int = 32

    # Training hyperparameters shared with SFTConfig (same meaning, same defaults).
    backend: Backend = _SFT_DEFAULTS["backend"]
    lora_dropout: float = _SFT_DEFAULTS["lora_dropout"]
    epochs: float = _SFT_DEFAULTS["epochs"]
    max_steps: int = _SFT_DEFAULTS["max_steps"]
    learning_rate: float = _SFT_DEFAULTS["learning_rate"]
    lr_scheduler: Scheduler = _SFT_DEFAULTS["lr_scheduler"]
    warmup_ratio: float = _SFT_DEFAULTS["warmup_ratio"]
    weight_decay: float = _SFT_DEFAULTS["weight_decay"]
    max_grad_norm: float = _SFT_DEFAULTS["max_grad_norm"]
    batch_size: int = _SFT_DEFAULTS["batch_size"]
    gradient_accumulation_steps: int = _SFT_DEFAULTS["gradient_accumulation_steps"]
    max_seq_length: int = _SFT_DEFAULTS["max_seq_length"]
    seed: int = _SFT_DEFAULTS["seed"]
    vram_budget_mb: int = _SFT_DEFAULTS["vram_budget_mb"]
    eval_steps: int = _SFT_DEFAULTS["eval_steps"]
    logging_steps: int = _SFT_DEFAULTS["logging_steps"]
    save_steps: int = _SFT_DEFAULTS["save_steps"]
    checkpoint_root: str = _SFT_DEFAULTS["checkpoint_root"]
    num_processes: int = _SFT_DEFAULTS["num_processes"]

    def shared_sft_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SHARED_SFT_FIELDS}

    def problems(self) -> list[str]:
        check = Checks()
        check.at_least("num_documents", self.num_documents, 2)
        check.fraction("oracle_probability", self.oracle_probability, open_right=False)
        check.at_least("num_examples", self.num_examples, 0)
        check.at_least("max_document_chars", self.max_document_chars, 32)
        check.at_least("max_quotes", self.max_quotes, 1)
        check.fraction("retrieval_mix_ratio", self.retrieval_mix_ratio)
        check.at_least("max_heldout_examples", self.max_heldout_examples, 1)
        check.at_least("eval_max_new_tokens", self.eval_max_new_tokens, 1)
        check.at_least("eval_batch_size", self.eval_batch_size, 1)
        check.at_least("encoder_batch_size", self.encoder_batch_size, 1)
        # The shared fields get exactly SFTConfig's checks (its LoRA-shape fields keep defaults).
        shared = SFTConfig(**self.shared_sft_values())
        return check.found + shared.problems()

    def to_sft_config(self, lora_r: int, lora_alpha: int, target_modules: list[str]) -> SFTConfig:
        """The SFTConfig of the training loop: shared fields plus the adapter's LoRA shape."""
        return load_sft_config(
            {
                **self.shared_sft_values(),
                "lora_r": lora_r,
                "lora_alpha": lora_alpha,
                "target_modules": list(target_modules),
                "french_mix_ratio": 0.0,
            }
        )


def load_raft_config(values: dict[str, Any] | None = None) -> RaftConfig:
    """Build a ``RaftConfig`` from a mapping, reporting every problem at once."""
    return load_config(RaftConfig, values)
