"""The evaluate stage's config and the promotion gate's: what is measured, what "better" means."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from monGARS.mlops.configs import Checks

# The tiny default's values: a handful of items and short answers keep the stage to seconds on
# 2 CPU cores (README: the end-to-end run grows by no more than 15 s).
TINY_EVALUATE_OVERRIDES: dict[str, Any] = {"max_examples": 6, "max_new_tokens": 24}


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """How a module's deployable files are measured on its held-out split."""

    CONFIG_NAME: ClassVar[str] = "evaluate"

    # Held-out items per module (the first ones of val.jsonl): bounds the stage's cost. 32 items of
    # a 7B model take a few CPU minutes per model (tuned GGUF, base GGUF, HF).
    max_examples: int = 32
    # Greedy answer length; the code-mined references are 40-120 tokens.
    max_new_tokens: int = 96
    # Conversations are cut at this length for the NLL, as SFT cuts them.
    max_seq_length: int = 1024
    # Also score the merged HF model on the same items: what quantisation costs on the task.
    hf_parity: bool = True
    # The HF model's NLL covers every item; its greedy answers (slow: f32 on CPU) only the first
    # ``hf_answers``, compared with the GGUF's answers on those same items.
    hf_answers: int = 8
    # Retrieval queries scored with the encoder (the held-out ones the llm2vec stage leaves out of
    # training, ``llm2vec/data.py: load_retrieval_eval``); 0 turns the encoder figures off.
    retrieval_max_queries: int = 64

    def problems(self) -> list[str]:
        checks = Checks()
        checks.at_least("max_examples", self.max_examples, 1)
        checks.at_least("max_new_tokens", self.max_new_tokens, 1)
        checks.at_least("max_seq_length", self.max_seq_length, 16)
        checks.at_least("retrieval_max_queries", self.retrieval_max_queries, 0)
        checks.at_least("hf_answers", self.hf_answers, 0)
        return checks.found


@dataclasses.dataclass(frozen=True)
class PromotionConfig:
    """The gate between an evaluated run and the champion registry."""

    CONFIG_NAME: ClassVar[str] = "promote"

    # Where champions live between runs: gs://bucket/prefix, a folder on the shared volume, or a
    # local folder. '' = champions/ on the shared cache volume (a local run: runs/champions).
    registry: str = ""
    # The tuned model's assistant-token NLL (nats/token) must be at least this much below the
    # base model's, measured on the same items and quant.
    min_gain_over_base: float = 0.0
    # Against the current champion, re-scored on this run's items: NLL may be at most this share
    # higher, and each score in [0, 1] (token F1, fact recall, French share, retrieval MRR) at most
    # this much lower. A night that changes nothing is still published; a regression is not.
    tolerance: float = 0.02
    # Share of generated answers the language identifier must accept as French.
    min_french_share: float = 0.5
    # Publish promoted models (false: decide and report only, the registry untouched).
    publish: bool = True

    def problems(self) -> list[str]:
        checks = Checks()
        checks.at_least("min_gain_over_base", self.min_gain_over_base, 0.0)
        checks.fraction("tolerance", self.tolerance)
        checks.fraction("min_french_share", self.min_french_share, open_right=False)
        return checks.found
