"""The raft stage: retrieval-augmented fine-tuning (RAFT, Zhang et al. 2024) of one module.

``train_raft`` builds RAFT examples (see ``raft_data``: questions with the oracle document among
distractors mined with the module's llm2vec encoder), then continues training the module's SFT
LoRA adapter on them with the sft stage's backends, label mask and Trainer loop, so the loss falls
on the target answer only (quotes + answer, ``raft_format``). Held-out examples (from the val
splits) are scored for the SFT adapter before training and the RAFT adapter after: loss on the
answer tokens, and greedy answers' exact match, F1, quote match and format rate (``raft_eval``).

Output folder (written atomically), the SFT adapter's layout::

    adapter/                   PEFT LoRA adapter + tokenizer (the SFT adapter, trained further)
    training_config.json       resolved config, "stage": "raft", "module", backend, adapter shape
    metrics.json               losses, held-out scores of both models, example counts
    heldout_generations.jsonl  each held-out example with the SFT and RAFT greedy answers
    loss_curve.png / .html     train and held-out loss against the step

Run as ``python -m monGARS.mlops.training.raft.cli --base-model DIR --sft DIR [--encoder DIR]
--datasets DIR --module M --out DIR [--config FILE] [--set key=value ...]``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import write_json, write_jsonl
from monGARS.mlops.configs import config_to_dict
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.modeling import ADAPTER_SUBDIR, load_tokenizer
from monGARS.mlops.training.common.backends import (
    Environment,
    LoraSettings,
    detect_environment,
    load_for_training,
    plan_memory,
    probes_unsloth,
    select_backend,
)
from monGARS.mlops.training.common.chat_data import (
    ChatCollator,
    ChatDataset,
    TokenizedChat,
    ensure_chat_template,
    tokenize_chat,
)
from monGARS.mlops.training.common.checkpoints import (
    CheckpointStore,
    adapter_digest,
    checkpoint_callback,
    hash_tree,
    prepare_for_ranks,
    run_key,
)
from monGARS.mlops.training.common.distributed import (
    World,
    current_world,
    from_main,
    gather_objects,
    init,
    launch,
    main_writes,
    process_count,
    shard,
    shared_dir,
    split_batch,
    sum_over_ranks,
)
from monGARS.mlops.training.common.inputs import check_training_inputs
from monGARS.mlops.training.common.runtime import (
    package_versions,
    peak_memory_mb,
)
from monGARS.mlops.training.raft.config import RaftConfig, load_raft_config
from monGARS.mlops.training.raft.data import (
    Embed,
    RaftExample,
)
from monGARS.mlops.training.raft.eval import generate_answers, prompt_ids, score_answers
from monGARS.mlops.training.raft.prepare import (
    load_sft_weights,
    prepare_examples,
    read_adapter_shape,
)

__all__ = [
    "RaftConfig",
    "load_raft_config",
    "load_sft_weights",
    "prepare_examples",
    "read_adapter_shape",
    "train_raft",
]

# Fields that change where or how often things are written or measured, or how many ranks share
# the global batch, not what is trained: a run resumes with any number of ranks.
_ENTRY = "monGARS.mlops.training.raft.train:train_raft"
_KEY_EXCLUDED = (
    "num_processes",
    "checkpoint_root",
    "logging_steps",
    "eval_steps",
    "save_steps",
    "max_heldout_examples",
    "eval_max_new_tokens",
    "eval_batch_size",
    "encoder_batch_size",
)


def _tokenize(
    tokenizer: Any, examples: list[RaftExample], max_seq_length: int, *, whole: bool
) -> tuple[list[RaftExample], list[TokenizedChat], int]:
    """Tokenize with the assistant-only label mask; drop examples that lose their whole target
    (or, with ``whole``, any token: evaluation compares complete answers)."""
    kept, tokenized, dropped = [], [], 0
    for example in examples:
        chat = tokenize_chat(tokenizer, example.messages(), max_seq_length)
        if chat is None or (whole and len(chat.input_ids) >= max_seq_length):
            dropped += 1
            continue
        kept.append(example)
        tokenized.append(chat)
    return kept, tokenized, dropped


def _examples_digest(examples: list[RaftExample]) -> str:
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps(example.to_record(), sort_keys=True).encode("utf-8") + b"\n")
    return digest.hexdigest()


# ---------------------------------------------------------------------------- the stage


def train_raft(
    config: RaftConfig | dict[str, Any],
    base_model_dir: str | Path,
    sft_dir: str | Path,
    encoder_dir: str | Path | None,
    datasets_dir: str | Path,
    module: str,
    out_dir: str | Path,
    *,
    base_model_name: str | None = None,
    env: Environment | None = None,
    embed: Embed | None = None,
) -> dict[str, Any]:
    """RAFT-train ``module``'s SFT adapter; write ``out_dir`` atomically; return flat metadata.

    ``encoder_dir`` is the llm2vec output that mines hard negatives (None: random distractors);
    ``embed`` (texts -> embeddings) replaces it when given.
    """
    if not isinstance(config, RaftConfig):
        config = load_raft_config(config)
    world = current_world()
    if not world.distributed:  # several GPUs: run as that many data-parallel ranks
        processes = process_count(config.num_processes)
        if processes > 1:
            if embed is not None or env is not None:
                raise ValueError("embed and env are single-process test hooks; set num_processes=1")
            split_batch(config.batch_size, config.gradient_accumulation_steps, processes)
            arguments = {"config": config_to_dict(config), "module": module}
            arguments |= {"base_model_dir": str(base_model_dir), "sft_dir": str(sft_dir)}
            arguments |= {"encoder_dir": str(encoder_dir) if encoder_dir else None}
            arguments |= {"datasets_dir": str(datasets_dir), "out_dir": str(out_dir)}
            return launch(_ENTRY, {**arguments, "base_model_name": base_model_name}, processes)
    init(world)
    base, sft, datasets = Path(base_model_dir), Path(sft_dir), Path(datasets_dir)
    model_config = check_training_inputs(base, datasets, module)
    adapter_dir, shape = read_adapter_shape(sft, module)
    if encoder_dir is not None and not Path(encoder_dir).exists():
        raise MongarsError(f"encoder_dir: {encoder_dir} does not exist; pass the llm2vec output")
    sft_config = config.to_sft_config(shape["r"], shape["lora_alpha"], shape["target_modules"])
    env = env or detect_environment(probe_unsloth=probes_unsloth(config.backend, world.size))
    backend = select_backend(config.backend, env, world.size)
    micro, accumulation = split_batch(
        config.batch_size, config.gradient_accumulation_steps, world.size
    )
    plan = plan_memory(
        model_config,
        device="cuda" if env.cuda else "cpu",
        vram_budget_mb=config.vram_budget_mb,
        batch_size=micro,
        gradient_accumulation_steps=accumulation,
        max_seq_length=config.max_seq_length,
        lora_r=shape["r"],
    )

    # Rank 0 mines the examples (distractors from the encoder) and hands every rank the same set.
    prepared = None
    if world.is_main:
        prepared = prepare_examples(
            config, datasets, module, Path(encoder_dir) if encoder_dir else None, embed
        )
    train_examples, heldout_examples, counts = from_main(world, prepared)
    tokenizer = load_tokenizer(adapter_dir)  # the tokenizer and chat template SFT trained with
    ensure_chat_template(tokenizer)
    train_kept, train_chats, train_dropped = _tokenize(
        tokenizer, train_examples, config.max_seq_length, whole=False
    )
    heldout_kept, heldout_chats, heldout_dropped = _tokenize(
        tokenizer, heldout_examples, config.max_seq_length, whole=True
    )
    if not train_chats or not heldout_chats:
        raise MongarsError(
            f"max_seq_length: {config.max_seq_length} tokens leave no "
            f"{'training' if not train_chats else 'held-out'} example whole enough to learn from; "
            "raise max_seq_length or lower max_document_chars / num_documents"
        )
    counts.update(
        train_examples=len(train_chats),
        train_dropped_too_long=train_dropped,
        train_truncated=sum(1 for c in train_chats if len(c.input_ids) >= config.max_seq_length),
        heldout_examples=len(heldout_chats),
        heldout_dropped_too_long=heldout_dropped,
    )
    name = base_model_name or base.name

    store = None
    if config.checkpoint_root:
        resolved = {k: v for k, v in config_to_dict(config).items() if k not in _KEY_EXCLUDED}
        key = run_key(
            {
                "base_model": hash_tree(base),
                "sft_adapter": adapter_digest(adapter_dir),
                "examples": _examples_digest(train_kept),
                "module": module,
                "config": resolved,
                "backend": backend,
                "global_batch": config.batch_size * config.gradient_accumulation_steps,
                "code": package_versions().get("mongars-mlops", "source"),
            }
        )
        name_in_root = f"raft-{module}-{key}"
        mirror_dir = shared_dir(name_in_root) if world.distributed else None
        store = CheckpointStore(config.checkpoint_root, name_in_root, mirror_dir=mirror_dir)
    scratch_root = None if store else shared_dir(f"raft-{module}")
    try:
        with main_writes(world, out_dir) as scratch:
            metrics, history, generations = _train(
                config,
                sft_config,
                base,
                adapter_dir,
                shape,
                backend,
                env,
                plan,
                tokenizer,
                train_chats,
                heldout_kept,
                heldout_chats,
                store,
                scratch_root,
                scratch,
                world,
            )
            if scratch is None:  # ranks other than 0 write nothing
                return {"rank": world.rank}
            metrics.update(counts)
            write_json(scratch / "metrics.json", metrics)
            write_jsonl(scratch / "heldout_generations.jsonl", generations)
            write_json(
                scratch / "training_config.json",
                {
                    "stage": "raft",
                    "module": module,
                    "config": config_to_dict(config),
                    "adapter_shape": shape,
                    "backend": backend,
                    "device": "cuda" if env.cuda else "cpu",
                    "base_model": name,
                    "model_type": model_config["model_type"],
                    "sft_adapter_sha256": hash_tree(adapter_dir),
                    "memory_plan": {
                        "batch_size": plan.batch_size,
                        "gradient_accumulation_steps": plan.gradient_accumulation_steps,
                        "gradient_checkpointing": plan.gradient_checkpointing,
                        "estimated_mb": plan.estimated_mb,
                        "reason": plan.reason,
                    },
                    "checkpoint_location": store.location if store else "",
                    "versions": package_versions(),
                },
            )
            from monGARS.mlops.training.common.loss_curve import write_loss_curve

            write_loss_curve(
                history,
                scratch / "loss_curve.png",
                scratch / "loss_curve.html",
                f"raft {module} — {name} ({backend})",
            )
    finally:
        if store:
            store.close()
        if scratch_root and not world.distributed:
            shutil.rmtree(scratch_root, ignore_errors=True)
    flat = {
        "stage": "raft",
        "module": module,
        "base_model": name,
        "backend": backend,
        "device": "cuda" if env.cuda else "cpu",
        "distractors": counts["distractors"],
        "num_documents": config.num_documents,
        "oracle_probability": config.oracle_probability,
        **{
            k: metrics[k]
            for k in (
                "steps",
                "train_examples",
                "heldout_examples",
                "train_oracle_rate",
                "train_loss_first",
                "train_loss_last",
                "heldout_loss_sft",
                "heldout_loss_raft",
                "tokens_per_second",
            )
        },
    }
    for model_name in ("sft", "raft"):
        for score in ("exact_match", "answer_f1", "quote_match", "format_rate"):
            flat[f"{score}_{model_name}"] = metrics[model_name][score]
    return flat


def _train(
    config: RaftConfig,
    sft_config: Any,
    base: Path,
    adapter_dir: Path,
    shape: dict[str, Any],
    backend: str,
    env: Environment,
    plan: Any,
    tokenizer: Any,
    train_chats: list[TokenizedChat],
    heldout: list[RaftExample],
    heldout_chats: list[TokenizedChat],
    store: CheckpointStore | None,
    scratch_root: Path | None,
    scratch: Path | None,
    world: World,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Load the SFT adapter, score it, train it on RAFT examples, score again, save it.

    Every rank trains and generates its share of the held-out answers; only the one given a
    ``scratch`` (rank 0) saves the adapter.
    """
    from monGARS.mlops.training.common.loop import CountingTrainer, total_steps, training_arguments

    if env.cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    lora = LoraSettings(
        shape["r"],
        shape["lora_alpha"],
        config.lora_dropout,
        list(shape["target_modules"]),
        config.seed,
        config.max_seq_length,
    )
    # The writer lease first (rank 0 takes it): an identical run already training is refused
    # before a model loads.
    resume = prepare_for_ranks(store, world) if store else None
    local_rank = world.local_rank if world.distributed else None
    model = load_for_training(backend, base, lora, plan, env, local_rank=local_rank)
    loaded = load_sft_weights(model, adapter_dir)
    output_dir = store.local_dir if store else scratch_root
    assert output_dir is not None
    # A resumed run finds its step-0 evaluation (the SFT adapter's loss) in the restored history.
    arguments = training_arguments(
        sft_config,
        plan,
        env,
        backend,
        output_dir,
        steps=total_steps(sft_config, len(train_chats), plan, world.size),
        save=store is not None,
        evaluate=True,
        world_size=world.size,
        evaluate_first=resume is None,
    )
    trainer = CountingTrainer(
        model=model,
        args=arguments,
        train_dataset=ChatDataset(train_chats),
        eval_dataset=ChatDataset(heldout_chats),
        data_collator=ChatCollator(tokenizer.pad_token_id),
        callbacks=[checkpoint_callback(store, world)] if store else None,
    )
    prompts = [prompt_ids(tokenizer, example) for example in heldout]
    mine = prompts[shard(len(prompts), world)]  # each rank answers its slice, in rank order

    def answers() -> list[str]:
        if backend == "unsloth":  # Unsloth's patched model generates only in inference mode
            from unsloth import FastLanguageModel

            FastLanguageModel.for_inference(model)
        try:
            answered = generate_answers(
                model,
                tokenizer,
                mine,
                max_new_tokens=config.eval_max_new_tokens,
                batch_size=config.eval_batch_size,
            )
        finally:
            if backend == "unsloth":
                FastLanguageModel.for_training(model)
        return [text for part in gather_objects(world, answered) for text in part]

    sft_answers = answers()
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    train_seconds = time.perf_counter() - start - trainer.eval_seconds
    loss_raft = trainer.final_eval_loss()
    raft_answers = answers()
    if scratch is not None:
        model.save_pretrained(str(scratch / ADAPTER_SUBDIR))
        tokenizer.save_pretrained(str(scratch / ADAPTER_SUBDIR))
    trained_tokens = int(sum_over_ranks(world, trainer.trained_tokens))

    history = [dict(entry) for entry in trainer.state.log_history]
    loss_sft = next(e["eval_loss"] for e in history if "eval_loss" in e and e["step"] == 0)
    losses = [(e["step"], e["loss"]) for e in history if "loss" in e]
    metrics: dict[str, Any] = {
        "steps": int(trainer.state.global_step),
        "resumed_from_step": int(resume.name.rsplit("-", 1)[1]) if resume else 0,
        "optimizer_steps_run": trainer.optimizer_steps_run,
        "sft_weights_loaded": loaded,
        "train_loss_first": losses[0][1] if losses else None,
        "train_loss_last": losses[-1][1] if losses else None,
        "heldout_loss_sft": loss_sft,
        "heldout_loss_raft": loss_raft,
        "sft": score_answers(heldout, sft_answers),
        "raft": score_answers(heldout, raft_answers),
        "world_size": world.size,
        "trained_tokens": trained_tokens,
        "train_seconds": round(train_seconds, 3),
        "tokens_per_second": round(trained_tokens / train_seconds, 1) if train_seconds > 0 else 0.0,
        "peak_memory_mb": round(peak_memory_mb(env.cuda)[0], 1),
        "loss_history": [{"step": s, "loss": v} for s, v in losses],
        "eval_history": [
            {"step": e["step"], "eval_loss": e["eval_loss"]} for e in history if "eval_loss" in e
        ],
    }
    generations = [
        {**example.to_record(), "sft_output": sft_text, "raft_output": raft_text}
        for example, sft_text, raft_text in zip(heldout, sft_answers, raft_answers, strict=True)
    ]
    return metrics, history, generations
