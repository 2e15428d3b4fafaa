"""The llm2vec stage config: MNTP, SimCSE and supervised hyperparameters, validated before any
model loads.

Defaults follow the upstream LLM2Vec training configs (BehnamGhader et al. 2024,
``train_configs/{mntp,simcse,supervised}/*.json``) scaled to one GPU: MNTP with the "blank" ("_")
mask token and, per model family, upstream's collator and masking rate
(:data:`UPSTREAM_MNTP_MASKING`), LoRA r=16 / alpha=2r / dropout 0.05; SimCSE with attention
dropout 0.3 and loss_scale 20 (temperature 0.05); supervised with lr 2e-4, batch 64 and loss_scale
50 (temperature 0.02); 1000 steps each. Queries are embedded after the ``query_instruction``
(default :data:`DEFAULT_QUERY_INSTRUCTION`), as LLM2Vec encoders are used.
``TINY_LLM2VEC_OVERRIDES`` turns them into a run that trains the embedded tiny model on CPU in
well under a minute; ``make run`` and the tests use it.

Upstream JSON configs (``mntp_config`` / ``simcse_config`` / ``supervised_config``) are applied by
:func:`monGARS.mlops.training.llm2vec.upstream.load_llm2vec_config`: values they set replace these
defaults, and keys given directly in the stage config win over both.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from monGARS.mlops.configs import Checks
from monGARS.mlops.training.llm2vec.instruction import DEFAULT_QUERY_INSTRUCTION

TextSource = Literal["instruction", "reasoning", "conversation", "retrieval", "module"]
MaskTokenType = Literal["blank", "eos", "pad", "mask"]
CollatorType = Literal["all_mask", "default"]
DType = Literal["auto", "float32", "bfloat16", "float16"]
AttnImplementation = Literal["sdpa", "eager"]
# Which contrastive phase(s) follow MNTP; see Llm2VecConfig.contrastive_mode.
ContrastiveMode = Literal["auto", "unsupervised", "supervised", "both"]
Phase = Literal["mntp", "simcse", "supervised"]

# LoRA on the attention and MLP projections, as upstream ``initialize_peft`` does for them.
LORA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# MNTP (data_collator_type, mlm_probability) of upstream's train_configs/mntp/*.json (McGill-NLP/
# llm2vec @312adcf), by model_type: Mistral.json uses all_mask at 0.8; Llama2.json,
# MetaLlama3.json, MetaLlama3.1.json, Sheared-Llama.json and qwen2.json (commit 3beba22) use the
# BERT 80/10/10 collator ("default", also run_mntp.py's default) at 0.2.
UPSTREAM_MNTP_MASKING: dict[str, tuple[CollatorType, float]] = {
    "mistral": ("all_mask", 0.8),
    "llama": ("default", 0.2),
    "qwen2": ("default", 0.2),
}

# The embedded tiny model on 2 CPU cores: ~4 s of MNTP, ~7 s of SimCSE, ~15 s of supervised
# training. Sized for speed: no setting measured in docs/llm2vec.md ("Figures") makes the tiny
# model retrieve reliably better than before training (it depends on the start model and seed).
# contrastive_mode stays "auto" (supervised on the shipped corpus' retrieval pairs), and the
# supervised phase keeps upstream's temperature (0.02) and one hard negative per record.
TINY_LLM2VEC_OVERRIDES: dict[str, Any] = {
    "mntp_steps": 20,
    "mntp_learning_rate": 1e-3,
    "mntp_batch_size": 8,
    "mntp_gradient_accumulation_steps": 1,
    "mntp_max_seq_length": 128,
    "mntp_lora_r": 8,
    "simcse_steps": 40,
    "simcse_learning_rate": 3e-4,
    "simcse_batch_size": 16,
    "simcse_gradient_accumulation_steps": 1,
    "simcse_max_seq_length": 64,
    "simcse_lora_r": 8,
    "supervised_steps": 40,
    "supervised_learning_rate": 3e-4,
    "supervised_batch_size": 32,
    "supervised_gradient_accumulation_steps": 1,
    "supervised_max_seq_length": 64,
    "supervised_lora_r": 16,
    "gradient_checkpointing": False,
    "eval_batch_size": 32,
}


@dataclasses.dataclass(frozen=True)
class Llm2VecConfig:
    """Hyperparameters of one module's llm2vec run (bidirectional attention, MNTP, SimCSE)."""

    CONFIG_NAME: ClassVar[str] = "llm2vec"

    # Upstream LLM2Vec JSON training configs: a path or an already parsed mapping; see
    # llm2vec_upstream.py for which keys map where. Reported in metadata, never silently dropped.
    mntp_config: str | dict[str, Any] | None = None
    simcse_config: str | dict[str, Any] | None = None
    supervised_config: str | dict[str, Any] | None = None

    # Training text: corpora kinds under datasets/corpora/ plus "module" (datasets/modules/<m>/).
    text_sources: list[TextSource] = dataclasses.field(
        default_factory=lambda: ["instruction", "conversation", "retrieval", "module"]
    )
    # Cap on distinct training texts after deduplication (0 = all).
    max_train_texts: int = 0

    # MNTP (masked next-token prediction).
    mntp_steps: int = 1000
    mntp_learning_rate: float = 5e-5  # HF TrainingArguments' default, which upstream MNTP kept
    mntp_batch_size: int = 8
    mntp_gradient_accumulation_steps: int = 4  # effective 32, upstream's batch
    mntp_max_seq_length: int = 512
    mntp_lora_r: int = 16
    mntp_lora_alpha: int = 0  # 0 = 2 * r, upstream's rule
    mntp_lora_dropout: float = 0.05
    # None: upstream's value for the model family (UPSTREAM_MNTP_MASKING; see mntp_masking).
    mlm_probability: float | None = None
    mask_token_type: MaskTokenType = "blank"
    # all_mask: every selected token becomes the mask token; default: BERT's 80/10/10 split.
    data_collator_type: CollatorType | None = None

    # SimCSE (unsupervised contrastive learning, two dropout views of each text).
    simcse_steps: int = 1000
    simcse_learning_rate: float = 3e-5
    simcse_batch_size: int = 64  # in-batch negatives: bigger is better, upstream used 128
    simcse_gradient_accumulation_steps: int = 1
    simcse_max_seq_length: int = 128
    simcse_lora_r: int = 16
    simcse_lora_alpha: int = 0  # 0 = 2 * r
    simcse_lora_dropout: float = 0.05
    # Upstream's key: attention-probability dropout only (run_simcse.py passes it as the model's
    # attention_dropout). simcse_hidden_dropout adds BERT-style dropout on the embeddings and each
    # attention/MLP sublayer output; 0 (off) keeps upstream's recipe.
    simcse_dropout: float = 0.3
    simcse_hidden_dropout: float = 0.0
    temperature: float = 0.05  # upstream loss_scale 20 = 1 / temperature
    pooling_mode: Literal["mean"] = "mean"

    # Which contrastive phase(s) follow MNTP. unsupervised: SimCSE on plain texts; supervised:
    # (query, positive, hard negative) triples of the retrieval train split, in-batch negatives;
    # both: SimCSE then supervised (upstream's order); auto: the phases of the upstream configs
    # given (simcse_config: SimCSE, supervised_config: supervised, both: both), and without either,
    # supervised when the retrieval train split gives at least min_supervised_pairs usable pairs,
    # unsupervised otherwise.
    contrastive_mode: ContrastiveMode = "auto"
    min_supervised_pairs: int = 16

    # Supervised contrastive phase (upstream train_configs/supervised/*.json, run_supervised.py).
    supervised_steps: int = 1000
    supervised_learning_rate: float = 2e-4
    supervised_batch_size: int = 64  # records per batch: 64 queries, 64 positives, 64 negatives
    supervised_gradient_accumulation_steps: int = 1
    supervised_max_seq_length: int = 512
    supervised_lora_r: int = 16
    supervised_lora_alpha: int = 0  # 0 = 2 * r
    supervised_lora_dropout: float = 0.05
    supervised_temperature: float = 0.02  # upstream run_supervised.py loss_scale 50
    supervised_hard_negatives: int = 1  # per record and batch (upstream: 1); 0 = in-batch only

    # Shared.
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 42
    dtype: DType = "auto"  # auto: bfloat16 on a CUDA GPU that supports it, float32 otherwise
    attn_implementation: AttnImplementation = "sdpa"
    gradient_checkpointing: bool = True

    # Data-parallel ranks: 0 = one per GPU the pod sees (1 on CPU); N > 1 runs N ranks. Each
    # phase's *_batch_size stays the global micro batch, split across the ranks.
    num_processes: int = 0

    # Queries (evaluation, supervised training, RAFT mining, the export bundle) are read after
    # this instruction, which is attended to but not pooled; documents have none. "" = none.
    query_instruction: str = DEFAULT_QUERY_INSTRUCTION

    # Evaluation: retrieval on corpora/retrieval/val.jsonl, falling back to train+val when the
    # held-out split has fewer queries than this.
    min_eval_queries: int = 10
    eval_batch_size: int = 16

    # Resume: checkpoints under <checkpoint_root>/llm2vec-<module>-<key>/ every save_steps
    # optimizer steps and at each phase's end ('' = no checkpoints; the pipeline's stage entry
    # point puts them on the shared cache volume, as for sft and raft).
    checkpoint_root: str = ""
    save_steps: int = 100

    def lora_alpha(self, stage: Phase) -> int:
        """The LoRA alpha a stage uses (2 * r when left at 0, as upstream)."""
        alpha: int = getattr(self, f"{stage}_lora_alpha")
        return alpha or 2 * int(getattr(self, f"{stage}_lora_r"))

    def mntp_masking(self, model_type: str) -> tuple[CollatorType, float]:
        """(data_collator_type, mlm_probability) MNTP uses on ``model_type``: the values set, else
        upstream's for that family (UPSTREAM_MNTP_MASKING; the Llama configs' for others)."""
        fallback = UPSTREAM_MNTP_MASKING["llama"]
        collator, probability = UPSTREAM_MNTP_MASKING.get(model_type, fallback)
        return (
            self.data_collator_type or collator,
            probability if self.mlm_probability is None else self.mlm_probability,
        )

    def contrastive_phases(self, pairs: int) -> list[Phase]:
        """The phases after MNTP, given how many supervised pairs the datasets artifact holds."""
        mode = self.contrastive_mode
        if mode == "auto":
            mode, _ = self.auto_contrastive_mode(pairs)
        return {
            "unsupervised": ["simcse"],
            "supervised": ["supervised"],
            "both": ["simcse", "supervised"],
        }[mode]  # type: ignore[return-value]

    def auto_contrastive_mode(self, pairs: int) -> tuple[ContrastiveMode, str]:
        """What ``auto`` runs, and why. An upstream SimCSE or supervised config is a recipe the
        user chose (the runbook's ``--simcse-config``): its phase runs, rather than being mapped
        onto a phase that never runs. Without one, the retrieval pairs decide."""
        simcse, supervised = bool(self.simcse_config), bool(self.supervised_config)
        if simcse and supervised:
            return "both", "simcse_config and supervised_config given"
        if simcse:
            return "unsupervised", "simcse_config given"
        if supervised:
            return "supervised", "supervised_config given"
        if pairs >= self.min_supervised_pairs:
            return "supervised", f"{pairs} retrieval training pairs"
        return "unsupervised", (
            f"{pairs} retrieval training pairs, fewer than min_supervised_pairs "
            f"{self.min_supervised_pairs}"
        )

    def rank_problems(self, ranks: int) -> list[str]:
        """Phase batch sizes that cannot be split evenly across ``ranks`` data-parallel ranks."""
        found = []
        for stage in ("mntp", "simcse", "supervised"):
            size = int(getattr(self, f"{stage}_batch_size"))
            if ranks > 1 and size % ranks:
                found.append(
                    f"{stage}_batch_size: {size} does not divide across {ranks} ranks (each "
                    f"micro batch is split across them); make it a multiple of {ranks}"
                )
        return found

    def problems(self) -> list[str]:
        check = Checks()
        check.require(bool(self.text_sources), "text_sources", "give at least one source")
        check.require(
            len(set(self.text_sources)) == len(self.text_sources),
            "text_sources",
            "lists a source twice; give each once",
        )
        check.at_least("max_train_texts", self.max_train_texts, 0)
        for stage in ("mntp", "simcse", "supervised"):
            check.at_least(f"{stage}_steps", getattr(self, f"{stage}_steps"), 1)
            check.positive(f"{stage}_learning_rate", getattr(self, f"{stage}_learning_rate"))
            check.at_least(
                f"{stage}_gradient_accumulation_steps",
                getattr(self, f"{stage}_gradient_accumulation_steps"),
                1,
            )
            check.at_least(f"{stage}_max_seq_length", getattr(self, f"{stage}_max_seq_length"), 8)
            check.at_least(f"{stage}_lora_r", getattr(self, f"{stage}_lora_r"), 1)
            check.at_least(f"{stage}_lora_alpha", getattr(self, f"{stage}_lora_alpha"), 0)
            check.fraction(f"{stage}_lora_dropout", getattr(self, f"{stage}_lora_dropout"))
        check.at_least("mntp_batch_size", self.mntp_batch_size, 1)
        # One text per batch has no in-batch negative: InfoNCE would be identically zero.
        check.at_least("simcse_batch_size", self.simcse_batch_size, 2)
        check.at_least("supervised_batch_size", self.supervised_batch_size, 2)
        check.at_least("supervised_hard_negatives", self.supervised_hard_negatives, 0)
        check.at_least("min_supervised_pairs", self.min_supervised_pairs, 2)
        check.require(
            self.mlm_probability is None or 0 < self.mlm_probability < 1,
            "mlm_probability",
            f"must be between 0 and 1, exclusive, or unset (got {self.mlm_probability})",
        )
        check.fraction("simcse_dropout", self.simcse_dropout)
        check.fraction("simcse_hidden_dropout", self.simcse_hidden_dropout)
        check.require(
            "!@#$%^&*()" not in self.query_instruction,
            "query_instruction",
            "contains upstream's separator '!@#$%^&*()'; give the instruction text alone",
        )
        check.require(
            0 < self.temperature <= 10,
            "temperature",
            f"must be in (0, 10] (got {self.temperature}); upstream loss_scale 20 is 0.05",
        )
        check.require(
            0 < self.supervised_temperature <= 10,
            "supervised_temperature",
            f"must be in (0, 10] (got {self.supervised_temperature}); upstream loss_scale 50 "
            "is 0.02",
        )
        check.at_least("weight_decay", self.weight_decay, 0)
        check.positive("max_grad_norm", self.max_grad_norm)
        check.at_least("num_processes", self.num_processes, 0)
        for problem in self.rank_problems(self.num_processes):
            check.found.append(problem)
        check.at_least("min_eval_queries", self.min_eval_queries, 1)
        check.at_least("eval_batch_size", self.eval_batch_size, 1)
        check.at_least("save_steps", self.save_steps, 1)
        for name in ("mntp_config", "simcse_config", "supervised_config"):
            value = getattr(self, name)
            check.require(
                not isinstance(value, str) or bool(value.strip()),
                name,
                "is an empty path; give a JSON file path, a mapping, or leave it unset",
            )
        return check.found
