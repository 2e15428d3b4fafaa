"""The sft stage: LoRA / QLoRA supervised fine-tuning of one module, resumable after a kill.

``train_sft`` checks everything it can before loading a model (config, base model folder, dataset
files, backend, target modules, memory plan), then trains with the Trainer on pre-tokenized chats,
evaluates on the module's val split before, during and after training, and writes its output
folder atomically::

    adapter/               PEFT LoRA adapter + the tokenizer (with the chat template used)
    training_config.json   resolved config, backend, memory plan, base model, versions
    metrics.json           losses, steps, tokens/s, peak memory, record counts, loss history
    loss_curve.png         train/eval loss against the step
    loss_curve.html        the PNG embedded (base64) with a table, for a dsl.HTML artifact

Run as ``python -m monGARS.mlops.training.sft.cli --base-model DIR --datasets DIR --module M
--out DIR [--config FILE] [--set key=value ...]``.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import sha256_file, write_json
from monGARS.mlops.configs import config_to_dict
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.modeling import ADAPTER_SUBDIR, load_tokenizer
from monGARS.mlops.training.common.backends import (
    Environment,
    LoraSettings,
    MemoryPlan,
    check_target_modules,
    detect_environment,
    linear_module_names,
    load_for_training,
    plan_memory,
    probes_unsloth,
    select_backend,
)
from monGARS.mlops.training.common.chat_data import (
    CORPUS_KINDS,
    ChatCollator,
    ChatDataset,
    TokenizedSplit,
    ensure_chat_template,
    load_french_records,
    load_module_records,
    mix_records,
    tokenize_records,
)
from monGARS.mlops.training.common.checkpoints import (
    CheckpointStore,
    checkpoint_callback,
    hash_tree,
    prepare_for_ranks,
    run_key,
)
from monGARS.mlops.training.common.distributed import (
    World,
    current_world,
    init,
    launch,
    main_writes,
    process_count,
    shared_dir,
    split_batch,
    sum_over_ranks,
)
from monGARS.mlops.training.common.inputs import check_training_inputs
from monGARS.mlops.training.common.runtime import package_versions, peak_memory_mb
from monGARS.mlops.training.sft.config import SFTConfig, load_sft_config

# Fields that change where or how often things are written, or how many ranks share the global
# batch, not what is trained: a run resumes with any number of ranks.
_KEY_EXCLUDED = ("checkpoint_root", "logging_steps", "eval_steps", "save_steps", "num_processes")
_ENTRY = "monGARS.mlops.training.sft.train:train_sft"


def _dataset_files(datasets_dir: Path, module: str, with_corpora: bool) -> list[Path]:
    files = [datasets_dir / "modules" / module / f"{split}.jsonl" for split in ("train", "val")]
    if with_corpora:
        for kind in CORPUS_KINDS:
            path = datasets_dir / "corpora" / kind / "train.jsonl"
            if path.is_file():
                files.append(path)
    return files


def _key_inputs(
    config: SFTConfig,
    base_model_dir: Path,
    datasets_dir: Path,
    module: str,
    backend: str,
) -> dict[str, Any]:
    """What the checkpoint location hashes: every input that changes the trained adapter.

    The global batch is in the config; how it is cut into micro batches, accumulation and ranks
    (the memory plan, the number of ranks) is not, so any layout resumes the same run.
    """
    resolved = {k: v for k, v in config_to_dict(config).items() if k not in _KEY_EXCLUDED}
    files = _dataset_files(datasets_dir, module, config.french_mix_ratio > 0)
    return {
        "base_model": hash_tree(base_model_dir),
        "datasets": {p.relative_to(datasets_dir).as_posix(): sha256_file(p) for p in files},
        "module": module,
        "config": resolved,
        "backend": backend,
        "code": package_versions().get("mongars-mlops", "source"),
    }


def _prepare_data(
    config: SFTConfig, tokenizer: Any, datasets_dir: Path, module: str
) -> tuple[TokenizedSplit, TokenizedSplit, dict[str, int]]:
    module_train = load_module_records(datasets_dir, module, "train")
    val_records = load_module_records(datasets_dir, module, "val")
    french: list[dict[str, Any]] = []
    if config.french_mix_ratio > 0:
        french = load_french_records(datasets_dir, "train")
        if not french:
            raise MongarsError(
                f"french_mix_ratio: {config.french_mix_ratio} asks for French records but "
                f"{datasets_dir}/corpora has no instruction, reasoning or conversation "
                "train.jsonl; "
                "set french_mix_ratio=0 or build the corpora"
            )
    train_records = mix_records(module_train, french, config.french_mix_ratio, config.seed)
    train = tokenize_records(tokenizer, train_records, config.max_seq_length)
    val = tokenize_records(tokenizer, val_records, config.max_seq_length)
    if not train.examples:
        raise MongarsError(
            f"module: no training record of {module} keeps an assistant token within "
            f"max_seq_length={config.max_seq_length}; raise max_seq_length or check the data"
        )
    counts = {
        "module_train_records": len(module_train),
        "french_train_records": len(train_records) - len(module_train),
    }
    return train, val, counts


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """Everything checked and built before a model is loaded."""

    config: SFTConfig
    base: Path
    datasets: Path
    module: str
    model_config: dict[str, Any]
    env: Environment
    backend: str
    plan: MemoryPlan
    tokenizer: Any
    template_installed: bool
    train: TokenizedSplit
    val: TokenizedSplit
    counts: dict[str, int]
    world: World


def _prepare(
    config: SFTConfig,
    base: Path,
    datasets: Path,
    module: str,
    env: Environment | None,
    world: World,
) -> _Prepared:
    """Every check that can refuse the input, in the order docs/sft.md lists them."""
    model_config = check_training_inputs(base, datasets, module)
    # Probed before transformers is imported, so Unsloth can patch it.
    env = env or detect_environment(probe_unsloth=probes_unsloth(config.backend, world.size))
    backend = select_backend(config.backend, env, world.size)
    check_target_modules(
        config.target_modules, linear_module_names(base), str(model_config["model_type"])
    )
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
        lora_r=config.lora_r,
    )
    try:
        tokenizer = load_tokenizer(base)
    except (OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise MongarsError(
            f"base_model: {base} has no loadable tokenizer ({reason[:200]}); "
            "the folder needs tokenizer.json / tokenizer_config.json"
        ) from None
    template_installed = ensure_chat_template(tokenizer)
    train, val, counts = _prepare_data(config, tokenizer, datasets, module)
    return _Prepared(
        config,
        base,
        datasets,
        module,
        model_config,
        env,
        backend,
        plan,
        tokenizer,
        template_installed,
        train,
        val,
        counts,
        world,
    )


def train_sft(
    config: SFTConfig | dict[str, Any],
    base_model_dir: str | Path,
    datasets_dir: str | Path,
    module: str,
    out_dir: str | Path,
    *,
    base_model_name: str | None = None,
    env: Environment | None = None,
) -> dict[str, Any]:
    """Fine-tune ``module``'s LoRA adapter; write ``out_dir`` atomically; return flat metadata.

    With several devices (or ``num_processes`` > 1) the call relaunches itself as that many
    data-parallel ranks (``common/distributed.py``) and returns rank 0's metadata.
    """
    if not isinstance(config, SFTConfig):
        config = load_sft_config(config)
    world = current_world()
    if not world.distributed:
        processes = process_count(config.num_processes)
        if processes > 1:
            split_batch(config.batch_size, config.gradient_accumulation_steps, processes)
            arguments = {"config": config_to_dict(config), "module": module}
            arguments |= {"base_model_dir": str(base_model_dir), "out_dir": str(out_dir)}
            arguments |= {"datasets_dir": str(datasets_dir), "base_model_name": base_model_name}
            return launch(_ENTRY, arguments, processes)
    init(world)
    base, datasets = Path(base_model_dir), Path(datasets_dir)
    prepared = _prepare(config, base, datasets, module, env, world)
    name = base_model_name or base.name

    store = None
    if config.checkpoint_root:
        key = run_key(_key_inputs(config, base, datasets, module, prepared.backend))
        name_in_root = f"sft-{module}-{key}"
        mirror_dir = shared_dir(name_in_root) if world.distributed else None
        store = CheckpointStore(config.checkpoint_root, name_in_root, mirror_dir=mirror_dir)
    scratch_root = None if store else shared_dir(f"sft-{module}")
    try:
        with main_writes(world, out_dir) as scratch:
            metrics, log_history = _train(prepared, store, scratch_root or store.local_dir, scratch)
            if scratch is not None:
                _write_reports(prepared, name, store, metrics, log_history, scratch)
    finally:
        if store:
            store.close()
        if scratch_root and not world.distributed:
            shutil.rmtree(scratch_root, ignore_errors=True)
    if not world.is_main:  # its metrics are rank 0's; the launcher reports rank 0's metadata
        return {"rank": world.rank}
    return {
        "base_model": name,
        "backend": prepared.backend,
        "device": "cuda" if prepared.env.cuda else "cpu",
        "module": module,
        **{key: metrics[key] for key in _METADATA_KEYS},
    }


_METADATA_KEYS = (
    "steps",
    "resumed_from_step",
    "world_size",
    "trained_tokens",
    "optimizer_steps_run",
    "train_loss_first",
    "train_loss_last",
    "eval_loss_before",
    "eval_loss_after",
    "tokens_per_second",
    "peak_memory_mb",
    "train_records",
    "val_records",
)


def _write_reports(
    prepared: _Prepared,
    name: str,
    store: CheckpointStore | None,
    metrics: dict[str, Any],
    log_history: list[dict[str, Any]],
    scratch: Path,
) -> None:
    """metrics.json, training_config.json and the loss curve, next to the adapter."""
    from monGARS.mlops.training.common.loss_curve import write_loss_curve

    train, val, plan = prepared.train, prepared.val, prepared.plan
    metrics.update(prepared.counts)
    metrics["train_records"] = train.records
    metrics["val_records"] = val.records
    metrics["dropped_records"] = train.dropped_empty + val.dropped_empty
    metrics["truncated_records"] = train.truncated + val.truncated
    write_json(scratch / "metrics.json", metrics)
    write_json(
        scratch / "training_config.json",
        {
            "config": config_to_dict(prepared.config),
            "backend": prepared.backend,
            "device": "cuda" if prepared.env.cuda else "cpu",
            "base_model": name,
            "model_type": prepared.model_config["model_type"],
            "module": prepared.module,
            "memory_plan": dataclasses.asdict(plan),
            "chat_template_installed": prepared.template_installed,
            "checkpoint_location": store.location if store else "",
            "versions": package_versions(),
        },
    )
    write_loss_curve(
        log_history,
        scratch / "loss_curve.png",
        scratch / "loss_curve.html",
        f"sft {prepared.module} — {name} ({prepared.backend})",
    )


def _train(
    prepared: _Prepared, store: CheckpointStore | None, output_dir: Path, scratch: Path | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Load, train, evaluate and save the adapter into ``scratch``; return metrics and the log.

    Every rank trains; only the one given a ``scratch`` (rank 0) saves the adapter.
    """
    from monGARS.mlops.training.common.loop import CountingTrainer, total_steps, training_arguments

    config, env, plan, backend = prepared.config, prepared.env, prepared.plan, prepared.backend
    train, val, tokenizer, world = prepared.train, prepared.val, prepared.tokenizer, prepared.world
    if env.cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    lora = LoraSettings(
        config.lora_r,
        config.lora_alpha,
        config.lora_dropout,
        list(config.target_modules),
        config.seed,
        config.max_seq_length,
    )
    # The writer lease first (rank 0 takes it): an identical run already training is refused
    # before a model loads. A resumed run finds its step-0 evaluation in the restored log history.
    resume = prepare_for_ranks(store, world) if store else None
    local_rank = world.local_rank if world.distributed else None
    model = load_for_training(backend, prepared.base, lora, plan, env, local_rank=local_rank)
    evaluate = bool(val.examples)
    arguments = training_arguments(
        config,
        plan,
        env,
        backend,
        output_dir,
        steps=total_steps(config, len(train.examples), plan, world.size),
        save=store is not None,
        evaluate=evaluate,
        world_size=world.size,
        evaluate_first=resume is None,
    )
    trainer = CountingTrainer(
        model=model,
        args=arguments,
        train_dataset=ChatDataset(train.examples),
        eval_dataset=ChatDataset(val.examples) if evaluate else None,
        data_collator=ChatCollator(tokenizer.pad_token_id),
        callbacks=[checkpoint_callback(store, world)] if store else None,
    )
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    train_seconds = time.perf_counter() - start - trainer.eval_seconds
    eval_after = trainer.final_eval_loss() if evaluate else None
    if scratch is not None:
        model.save_pretrained(str(scratch / ADAPTER_SUBDIR))
        tokenizer.save_pretrained(str(scratch / ADAPTER_SUBDIR))
    trained_tokens = int(sum_over_ranks(world, trainer.trained_tokens))

    history = [dict(entry) for entry in trainer.state.log_history]
    before = [e["eval_loss"] for e in history if "eval_loss" in e and e["step"] == 0]
    eval_before = before[0] if before else None
    losses = [(e["step"], e["loss"]) for e in history if "loss" in e]
    peak_mb, peak_kind = peak_memory_mb(env.cuda)
    metrics: dict[str, Any] = {
        "steps": int(trainer.state.global_step),
        "resumed_from_step": int(resume.name.rsplit("-", 1)[1]) if resume else 0,
        "optimizer_steps_run": trainer.optimizer_steps_run,
        "train_loss_first": losses[0][1] if losses else None,
        "train_loss_last": losses[-1][1] if losses else None,
        "eval_loss_before": eval_before,
        "eval_loss_after": eval_after,
        "world_size": world.size,
        "trained_tokens": trained_tokens,
        "train_seconds": round(train_seconds, 3),
        "tokens_per_second": round(trained_tokens / train_seconds, 1) if train_seconds > 0 else 0.0,
        "peak_memory_mb": round(peak_mb, 1),
        "peak_memory_kind": peak_kind,
        "loss_history": [{"step": s, "loss": v} for s, v in losses],
        "learning_rate_history": [
            {"step": e["step"], "learning_rate": e["learning_rate"]}
            for e in history
            if "learning_rate" in e
        ],
        "eval_history": [
            {"step": e["step"], "eval_loss": e["eval_loss"]} for e in history if "eval_loss" in e
        ],
    }
    return metrics, history
