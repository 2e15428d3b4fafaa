"""RAFT inputs: the SFT adapter it continues, and the examples it trains and is scored on.

``prepare_examples`` reads the module's questions, mines distractors with the llm2vec encoder (or
at random without one) and builds the train and held-out RAFT examples (``raft.data``).
"""

from __future__ import annotations

import gc
import json
import random
from pathlib import Path
from typing import Any

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.modeling import adapter_path
from monGARS.mlops.training.common.runtime import empty_cuda_cache
from monGARS.mlops.training.raft.config import RaftConfig
from monGARS.mlops.training.raft.data import (
    Embed,
    QuestionSet,
    RaftExample,
    build_examples,
    hard_negatives,
    load_questions,
    question_order,
)


def read_adapter_shape(sft_dir: Path, module: str) -> tuple[Path, dict[str, Any]]:
    """The SFT adapter folder and its LoRA shape; refuse another stage's or module's output."""
    adapter = adapter_path(sft_dir)
    config_path = adapter / "adapter_config.json"
    if not config_path.is_file():
        raise MongarsError(
            f"sft_dir: {sft_dir} has no adapter/adapter_config.json; pass the sft stage's output"
        )
    try:
        shape = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MongarsError(f"sft_dir: {config_path} is not valid JSON ({error})") from None
    targets = shape.get("target_modules")
    if isinstance(targets, str) or not targets or "r" not in shape or "lora_alpha" not in shape:
        raise MongarsError(
            f"sft_dir: {config_path} is not a LoRA adapter with r, lora_alpha and a list of "
            "target_modules; pass the sft stage's output"
        )
    trained = sft_dir / "training_config.json"
    if trained.is_file():
        recorded = json.loads(trained.read_text(encoding="utf-8")).get("module")
        if recorded and recorded != module:
            raise MongarsError(
                f"sft_dir: {sft_dir} is the SFT adapter of module {recorded!r}, not {module!r}; "
                "pass the same module's sft output"
            )
    return adapter, {
        "r": int(shape["r"]),
        "lora_alpha": int(shape["lora_alpha"]),
        "target_modules": sorted(targets),
    }


def load_sft_weights(model: Any, adapter_dir: Path) -> int:
    """Copy the SFT adapter's weights into ``model``'s LoRA layers (same shape); return their count.

    Building the LoRA layers with the backend's own loader and then loading the weights works the
    same for Unsloth and peft, so RAFT continues the SFT adapter on either backend.
    """
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    weights = load_peft_weights(str(adapter_dir), device="cpu")
    try:
        result = set_peft_model_state_dict(model, weights)
    except RuntimeError as error:  # shape mismatch: another r, or another base model
        problem = str(error).strip().splitlines()[-1].strip()[:200]
        raise MongarsError(
            f"sft_dir: the adapter in {adapter_dir} does not fit the model ({problem}); "
            "pass the sft output trained on this base model"
        ) from None
    unexpected = [key for key in result.unexpected_keys if "lora_" in key]
    missing = [key for key in result.missing_keys if "lora_" in key]
    if unexpected or missing:
        sample = (unexpected or missing)[0]
        raise MongarsError(
            f"sft_dir: the adapter in {adapter_dir} does not fit the model "
            f"({len(unexpected)} unexpected, {len(missing)} missing LoRA weights, e.g. {sample}); "
            "pass the sft output trained on this base model"
        )
    return len(weights)


def _load_split(config: RaftConfig, datasets_dir: Path, module: str, split: str) -> QuestionSet:
    return load_questions(
        datasets_dir,
        module,
        split,
        config.retrieval_source,
        config.max_document_chars,
        retrieval_mix_ratio=config.retrieval_mix_ratio,
        seed=config.seed,
    )


def _embedder(
    encoder_dir: Path | None, embed: Embed | None, batch_size: int
) -> tuple[Embed | None, Embed | None, Any, str]:
    """(documents, questions) embedding functions for hard negatives, the loaded encoder, and its
    name. The llm2vec encoder reads questions after its query instruction, documents without."""
    if embed is not None:
        return embed, embed, None, "embed_function"
    if encoder_dir is None:
        return None, None, None, "random"
    from monGARS.mlops.training.llm2vec.encoder import load_encoder

    encoder = load_encoder(encoder_dir)
    return (
        lambda texts: encoder.embed(texts, batch_size=batch_size),
        lambda texts: encoder.embed_queries(texts, batch_size=batch_size),
        encoder,
        "encoder",
    )


def prepare_examples(
    config: RaftConfig,
    datasets_dir: Path,
    module: str,
    encoder_dir: Path | None = None,
    embed: Embed | None = None,
) -> tuple[list[RaftExample], list[RaftExample], dict[str, Any]]:
    """Training and held-out RAFT examples, and counts describing how they were made.

    Training questions come from the train splits with the train documents as the distractor
    pool; held-out questions from the val splits, with distractors from every document.
    """
    train = _load_split(config, datasets_dir, module, "train")
    heldout = _load_split(config, datasets_dir, module, "val")
    if not train.questions:
        raise MongarsError(
            f"module: no train record of {module} has a fact (the oracle document RAFT needs); "
            "rebuild the datasets with build_datasets, which keeps each record's fact"
        )
    if not heldout.questions:
        raise MongarsError(
            f"module: the val splits of {module} give no held-out question; RAFT is evaluated "
            "on them, so rebuild the datasets with a val split"
        )
    rng = random.Random(config.seed)
    heldout_questions = list(heldout.questions)
    rng.shuffle(heldout_questions)
    heldout_questions = heldout_questions[: config.max_heldout_examples]
    heldout_pool = list(dict.fromkeys([*train.documents, *heldout.documents]))

    embed_fn, embed_questions, encoder, distractors = _embedder(
        encoder_dir, embed, config.encoder_batch_size
    )
    ranked_train = ranked_heldout = None
    if embed_fn is not None:
        k = config.num_documents
        # Every document is embedded once: the train documents open the held-out pool. Only the
        # questions the examples will visit are embedded (num_examples may sample fewer).
        assert heldout_pool[: len(train.documents)] == train.documents  # unique, in order
        pool_vectors = embed_fn(heldout_pool)
        order = question_order(len(train.questions), config.num_examples, config.seed)
        visited = sorted(set(order))
        ranked_train = hard_negatives(
            [train.questions[index] for index in visited],
            train.documents,
            embed_fn,
            k,
            embed_questions=embed_questions,
            document_vectors=pool_vectors[: len(train.documents)],
        )
        ranked_heldout = hard_negatives(
            heldout_questions,
            heldout_pool,
            embed_fn,
            k,
            embed_questions=embed_questions,
            document_vectors=pool_vectors,
        )
        del pool_vectors
    if encoder is not None:  # free the encoder before the chat model loads
        del encoder, embed_fn, embed_questions
        gc.collect()
        empty_cuda_cache()

    common = {
        "k": config.num_documents,
        "oracle_probability": config.oracle_probability,
        "max_quotes": config.max_quotes,
        "absent_answer": config.absent_answer,
    }
    train_examples = build_examples(
        train.questions,
        train.documents,
        count=config.num_examples,
        seed=config.seed,
        ranked=ranked_train,
        **common,
    )
    heldout_examples = build_examples(
        heldout_questions,
        heldout_pool,
        count=0,
        seed=config.seed + 1,
        ranked=ranked_heldout,
        **common,
    )
    with_oracle = sum(1 for e in train_examples if e.oracle_index is not None)
    counts = {
        "distractors": distractors,
        "train_questions_module": sum(1 for q in train.questions if q.source == "module"),
        "train_questions_retrieval": sum(1 for q in train.questions if q.source == "retrieval"),
        "heldout_questions": len(heldout_questions),
        "train_documents": len(train.documents),
        "heldout_documents": len(heldout_pool),
        "skipped": {
            k: train.skipped.get(k, 0) + heldout.skipped.get(k, 0)
            for k in sorted({*train.skipped, *heldout.skipped})
        },
        "train_examples_with_oracle": with_oracle,
        "train_oracle_rate": round(with_oracle / len(train_examples), 4),
    }
    return train_examples, heldout_examples, counts
