"""The llm2vec stage: turn a module's fine-tuned decoder into a text encoder, in-process.

SFT model (base + sft adapter, merged) -> bidirectional attention -> MNTP LoRA (merged) -> SimCSE
and/or supervised contrastive LoRA (each merged; ``contrastive_mode``) -> ``encoder/``. Retrieval
is measured before MNTP (the SFT model made bidirectional, mean pooling), after MNTP and after
each contrastive phase on the same queries and passage pool, so the gain is the stage's.

Output folder (written atomically):

- ``encoder/``: the merged ``*ForCausalLM`` with ``is_causal: false`` in config.json, plus the
  tokenizer. Reload with ``bidirectional.load_bidirectional`` or ``encoder.load_encoder`` (both
  in this package; they re-apply the per-layer switch that config.json cannot carry);
- ``encoder.json``: pooling, normalisation, max_length, base model, module;
- ``metrics.json``: loss curves, first/last losses, retrieval before/after each phase, text and
  pair counts;
- ``training_config.json``: the resolved config and the upstream-config report.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import write_json
from monGARS.mlops.configs import config_to_dict
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.names import check_safe_name
from monGARS.mlops.training.common.checkpoints import CheckpointStore
from monGARS.mlops.training.common.distributed import (
    current_world,
    init,
    launch,
    main_writes,
    process_count,
    shared_dir,
)
from monGARS.mlops.training.common.retrieval_eval import evaluate_retrieval
from monGARS.mlops.training.common.runtime import package_versions
from monGARS.mlops.training.llm2vec.bidirectional import check_supported, enable_bidirectional
from monGARS.mlops.training.llm2vec.config import Llm2VecConfig, Phase
from monGARS.mlops.training.llm2vec.data import (
    RetrievalSet,
    TrainingTexts,
    load_retrieval_eval,
    load_training_texts,
)
from monGARS.mlops.training.llm2vec.encoder import ENCODER_JSON, ENCODER_SUBDIR, embed_texts
from monGARS.mlops.training.llm2vec.lora import add_lora, cycle_batches, merge_lora, train_steps
from monGARS.mlops.training.llm2vec.mntp import make_mntp_step, resolve_mask_token_id
from monGARS.mlops.training.llm2vec.resume import (
    Llm2VecCheckpoints,
    Progress,
    Resumed,
    checkpoint_key,
)
from monGARS.mlops.training.llm2vec.simcse import make_simcse_step, simcse_dropout
from monGARS.mlops.training.llm2vec.supervised import (
    ContrastiveRecord,
    cycle_contrastive_batches,
    load_contrastive_records,
    make_supervised_step,
)
from monGARS.mlops.training.llm2vec.upstream import load_llm2vec_config, log_report, upstream_report

LOG = logging.getLogger(__name__)
_ENTRY = "monGARS.mlops.training.llm2vec.train:train_llm2vec"


def _torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def _seed_everything(seed: int) -> Any:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def _loss_summary(losses: list[float]) -> dict[str, Any]:
    """First/last step losses, plus means of the first and last tenth (steps are noisy)."""
    window = max(1, math.ceil(len(losses) / 10))
    return {
        "steps": len(losses),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "loss_first_mean": sum(losses[:window]) / window,
        "loss_last_mean": sum(losses[-window:]) / window,
        "losses": losses,
    }


def _evaluate(
    model: Any, tokenizer: Any, eval_set: RetrievalSet, config: Llm2VecConfig, max_length: int
) -> dict:
    backbone = model.base_model

    def embed(texts: list[str], instruction: str | None = None) -> Any:
        return embed_texts(
            backbone,
            tokenizer,
            texts,
            max_length=max_length,
            batch_size=config.eval_batch_size,
            instruction=instruction,
        )

    return evaluate_retrieval(
        embed,
        eval_set.queries,
        eval_set.passages,
        eval_set.relevant,
        embed_queries=lambda texts: embed(texts, config.query_instruction),
    )


def _resolve_sft_adapter(sft_dir: str | Path | None) -> Path | None:
    from monGARS.mlops.modeling import adapter_path

    if sft_dir is None:
        return None
    adapter = adapter_path(sft_dir)
    if not (adapter / "adapter_config.json").is_file():
        raise MongarsError(
            f"sft_dir: {sft_dir} has no adapter/adapter_config.json; pass the sft stage's output "
            "folder, or None to start from the base model"
        )
    return adapter


def _load_start_model(
    config: Llm2VecConfig, base_model_dir: str | Path, adapter: Path | None, device: str
) -> Any:
    """The module's SFT model (adapter merged), on ``device``, with bidirectional attention."""
    from monGARS.mlops.modeling import load_causal_lm

    model = load_causal_lm(
        base_model_dir, adapter, merge=True, dtype=_torch_dtype(config.dtype, device), device=device
    )
    check_supported(model.config, "base_model")
    if model.config._attn_implementation != config.attn_implementation:
        model.set_attn_implementation(config.attn_implementation)
    model.config.use_cache = False
    return enable_bidirectional(model)


@dataclasses.dataclass
class _Run:
    """The resume context of one stage run: checkpoints, the resume point, the random streams."""

    config: Llm2VecConfig
    phases: list[Phase]  # mntp first
    generator: Any
    checkpoints: Llm2VecCheckpoints | None = None
    resumed: Resumed | None = None
    losses: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    retrieval: dict[str, Any] = dataclasses.field(default_factory=dict)
    steps_run: int = 0  # optimizer steps this process ran (fewer than the total after a resume)

    def offset(self, index: int) -> int:
        """Optimizer steps of the phases before ``index`` (checkpoint numbers run on)."""
        return sum(int(getattr(self.config, f"{p}_steps")) for p in self.phases[:index])

    def resumes_at(self, index: int) -> int | None:
        """Steps already done in phase ``index`` when resuming into it, else None."""
        if self.resumed is None or self.resumed.progress.phase_index != index:
            return None
        return self.resumed.progress.phase_step

    def done(self, index: int) -> bool:
        return self.resumed is not None and index < self.resumed.progress.phase_index

    def save(self, index: int, step: int, peft_model: Any = None, optimizer: Any = None) -> None:
        if self.checkpoints is None:
            return
        from peft import get_peft_model_state_dict

        progress = Progress(
            phase_index=index,
            phase_step=step,
            losses=dict(self.losses),
            retrieval=dict(self.retrieval),
            global_step=self.offset(index) + step,
        )
        state = get_peft_model_state_dict(peft_model) if peft_model is not None else None
        self.checkpoints.save(progress, self.generator, state, optimizer)


def _rebuild_phase(model: Any, config: Llm2VecConfig, phase: Phase, adapter: Path) -> Any:
    """A finished phase, from its saved LoRA: attach, load, merge (the weights it merged)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    peft_model = add_lora(
        model,
        getattr(config, f"{phase}_lora_r"),
        config.lora_alpha(phase),
        getattr(config, f"{phase}_lora_dropout"),
    )
    set_peft_model_state_dict(peft_model, load_file(str(adapter)))
    return enable_bidirectional(merge_lora(peft_model))


def _train_phase(
    model: Any,
    config: Llm2VecConfig,
    phase: Phase,
    make_step: Any,
    batches: Any,
    run: _Run | None = None,
    index: int = 0,
) -> tuple[Any, list[float]]:
    """Attach a fresh LoRA, train it, merge it; return the merged model and the step losses.

    With ``run``, a phase killed midway continues from its last checkpoint: LoRA and AdamW state
    loaded, the batch stream fast-forwarded, every random stream restored.
    """
    resume_step = run.resumes_at(index) if run else None
    if run is not None and run.resumed is not None and resume_step == 0:
        run.resumed.restore_rng(run.generator)  # saved at the phase boundary, before the LoRA
    peft_model = add_lora(
        model,
        getattr(config, f"{phase}_lora_r"),
        config.lora_alpha(phase),
        getattr(config, f"{phase}_lora_dropout"),
    )
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    steps = int(getattr(config, f"{phase}_steps"))
    accumulation = int(getattr(config, f"{phase}_gradient_accumulation_steps"))
    start, optimizer_state, prior = 0, None, []
    if run is not None and run.resumed is not None and resume_step:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(peft_model, load_file(str(run.resumed.current)))
        optimizer_state = run.resumed.load_optimizer()
        start, prior = resume_step, list(run.resumed.progress.losses.get(phase, []))
        for _ in range(start * accumulation):  # the micro-batches the killed run had drawn
            next(batches)
        run.resumed.restore_rng(run.generator)

    def on_step(step: int, optimizer: Any, losses: list[float]) -> None:
        if run is not None and run.checkpoints is not None and run.checkpoints.due(step, steps):
            run.losses[phase] = list(losses)
            run.save(index, step, peft_model, optimizer)

    losses = train_steps(
        peft_model,
        make_step(peft_model, batches),
        steps=steps,
        accumulation=accumulation,
        learning_rate=getattr(config, f"{phase}_learning_rate"),
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        phase=phase,
        start_step=start,
        optimizer_state=optimizer_state,
        losses=prior,
        on_step=on_step,
    )
    if run is not None and run.checkpoints is not None:
        from peft import get_peft_model_state_dict

        run.checkpoints.finish_phase(index, phase, get_peft_model_state_dict(peft_model))
    merged = merge_lora(peft_model)
    if config.gradient_checkpointing:
        merged.gradient_checkpointing_disable()
    return enable_bidirectional(merged), losses


def _flat_metadata(
    summary: dict[str, Any], report_flat: dict[str, str], retrieval: dict[str, Any]
) -> dict[str, Any]:
    flat = {k: v for k, v in summary.items() if isinstance(v, str | int | float | bool)}
    for when in ("before", "after"):
        for metric, value in retrieval[when].items():
            flat[f"retrieval_{when}_{metric}"] = value
    flat["retrieval_split"] = retrieval["split"]
    flat["retrieval_note"] = retrieval["note"]
    flat.update(report_flat)
    return flat


def _check_training_data(
    config: Llm2VecConfig,
    phases: list[Phase],
    module: str,
    corpus: TrainingTexts,
    pairs: list[ContrastiveRecord],
) -> None:
    """Refuse, before any model loads, a run whose phases have too little to train on."""
    if "simcse" in phases and len(corpus.texts) < config.simcse_batch_size:
        raise MongarsError(
            f"text_sources: {len(corpus.texts)} distinct training texts for module {module!r}, "
            f"fewer than simcse_batch_size={config.simcse_batch_size}; add sources or lower the "
            "batch size"
        )
    if "supervised" in phases and len(pairs) < 2:
        why = ""
        if config.contrastive_mode == "auto":
            why = f" ({config.auto_contrastive_mode(len(pairs))[1]})"
        raise MongarsError(
            f"contrastive_mode: {config.contrastive_mode!r}{why} needs retrieval training pairs, "
            f"and corpora/retrieval/train.jsonl gives {len(pairs)} once the evaluation's texts are "
            "left out; build the datasets with a retrieval source or use 'unsupervised'"
        )


def _contrastive_phase(
    model: Any,
    tokenizer: Any,
    config: Llm2VecConfig,
    phase: Phase,
    texts: list[str],
    pairs: list[ContrastiveRecord],
    run: _Run | None = None,
    index: int = 1,
) -> tuple[Any, list[float]]:
    """One contrastive phase after MNTP: SimCSE on ``texts`` or supervised on ``pairs``."""
    if phase == "supervised":
        batches = cycle_contrastive_batches(
            pairs, config.supervised_batch_size, config.supervised_hard_negatives, config.seed + 2
        )
        return _train_phase(
            model,
            config,
            "supervised",
            lambda peft_model, batches: make_supervised_step(
                peft_model,
                tokenizer,
                batches,
                max_length=config.supervised_max_seq_length,
                temperature=config.supervised_temperature,
                query_instruction=config.query_instruction,
            ),
            batches,
            run,
            index,
        )
    with simcse_dropout(model, config.simcse_dropout, config.simcse_hidden_dropout):
        return _train_phase(
            model,
            config,
            "simcse",
            lambda peft_model, batches: make_simcse_step(
                peft_model,
                tokenizer,
                batches,
                max_length=config.simcse_max_seq_length,
                temperature=config.temperature,
            ),
            cycle_batches(texts, config.simcse_batch_size, config.seed + 1),
            run,
            index,
        )


def _data_identity(
    corpus: TrainingTexts, pairs: list[ContrastiveRecord], eval_set: RetrievalSet
) -> dict[str, Any]:
    """What the phases train and measure on, in the order they use it (part of the key)."""
    return {
        "texts": corpus.texts,
        "pairs": [[p.query, list(p.positives), list(p.negatives)] for p in pairs],
        "eval": [eval_set.queries, eval_set.passages, [sorted(r) for r in eval_set.relevant]],
    }


@dataclasses.dataclass(frozen=True)
class _MntpMasking:
    """MNTP's masking as resolved for the model family (``Llm2VecConfig.mntp_masking``)."""

    mask_token_id: int
    collator_type: str
    probability: float


def _run_phases(
    model: Any,
    tokenizer: Any,
    config: Llm2VecConfig,
    run: _Run,
    corpus: TrainingTexts,
    pairs: list[ContrastiveRecord],
    eval_set: RetrievalSet,
    max_length: int,
    masking: _MntpMasking,
) -> Any:
    """MNTP then the contrastive phase(s), each evaluated; finished ones rebuilt on a resume."""
    if "before" not in run.retrieval:
        run.retrieval["before"] = _evaluate(model, tokenizer, eval_set, config, max_length)
        LOG.info("llm2vec: retrieval before MNTP: %s", run.retrieval["before"])
    for index, phase in enumerate(run.phases):
        if run.done(index):
            assert run.resumed is not None and run.checkpoints is not None
            saved = run.resumed.adapter(index, phase)
            model = _rebuild_phase(model, config, phase, saved)
            from safetensors.torch import load_file

            run.checkpoints.finished[(index, phase)] = load_file(str(saved))
            continue
        if phase == "mntp":
            model, losses = _train_phase(
                model,
                config,
                "mntp",
                lambda peft_model, batches: make_mntp_step(
                    peft_model,
                    tokenizer,
                    batches,
                    max_length=config.mntp_max_seq_length,
                    probability=masking.probability,
                    mask_token_id=masking.mask_token_id,
                    collator_type=masking.collator_type,
                    generator=run.generator,
                ),
                cycle_batches(corpus.texts, config.mntp_batch_size, config.seed),
                run,
                index,
            )
        else:
            model, losses = _contrastive_phase(
                model, tokenizer, config, phase, corpus.texts, pairs, run, index
            )
        done_before = run.resumes_at(index) or 0
        run.steps_run += len(losses) - done_before
        run.losses[phase] = losses
        run.retrieval[f"after_{phase}"] = _evaluate(model, tokenizer, eval_set, config, max_length)
        run.save(index + 1, 0)  # the phase boundary: merged weights rebuilt from its LoRA
    return model


def train_llm2vec(
    config: Llm2VecConfig | Mapping[str, Any],
    base_model_dir: str | Path,
    sft_dir: str | Path | None,
    datasets_dir: str | Path,
    module: str,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Run bidirectional + MNTP + contrastive phase(s) for ``module``; write the encoder; return
    flat metadata.

    ``config`` may be a mapping (then upstream configs in it are applied by
    :func:`load_llm2vec_config`) or an already loaded :class:`Llm2VecConfig`.
    """
    started = time.monotonic()
    if not isinstance(config, Llm2VecConfig):
        config = load_llm2vec_config(config)
    world = current_world()
    if not world.distributed:  # several GPUs: run as that many data-parallel ranks
        processes = process_count(config.num_processes)
        if processes > 1:
            if problems := config.rank_problems(processes):
                raise MongarsError(problems[0])
            arguments = {"config": config_to_dict(config), "module": module}
            arguments |= {"base_model_dir": str(base_model_dir), "out_dir": str(out_dir)}
            arguments |= {"sft_dir": str(sft_dir) if sft_dir else None}
            return launch(_ENTRY, {**arguments, "datasets_dir": str(datasets_dir)}, processes)
    init(world)
    check_safe_name("module", module)
    report = upstream_report(config)
    log_report(report)
    adapter = _resolve_sft_adapter(sft_dir)
    eval_set = load_retrieval_eval(datasets_dir, config.min_eval_queries)
    if eval_set.note:
        LOG.warning("llm2vec: %s", eval_set.note)
    eval_texts = [*eval_set.queries, *eval_set.passages]
    corpus = load_training_texts(
        datasets_dir,
        module,
        config.text_sources,
        seed=config.seed,
        max_texts=config.max_train_texts,
        exclude=eval_texts,
    )
    pairs, pairs_excluded = load_contrastive_records(datasets_dir, exclude=eval_texts)
    phases = config.contrastive_phases(len(pairs))
    _check_training_data(config, phases, module, corpus, pairs)
    # The encoder's max length is the last phase's; every evaluation uses it, before included.
    max_length: int = getattr(config, f"{phases[-1]}_max_seq_length")
    LOG.info(
        "llm2vec: contrastive_mode %s -> %s (%s)",
        config.contrastive_mode,
        " then ".join(phases),
        config.auto_contrastive_mode(len(pairs))[1]
        if config.contrastive_mode == "auto"
        else f"{len(pairs)} retrieval training pairs",
    )

    from monGARS.mlops.modeling import load_tokenizer, pick_device

    device = pick_device()
    generator = _seed_everything(config.seed)
    tokenizer = load_tokenizer(base_model_dir)
    tokenizer.padding_side = "right"
    mask_token_id = resolve_mask_token_id(tokenizer, config.mask_token_type)
    model = _load_start_model(config, base_model_dir, adapter, device)
    collator_type, mlm_probability = config.mntp_masking(model.config.model_type)

    all_phases: list[Phase] = ["mntp", *phases]
    run = _Run(config, all_phases, generator)
    if config.checkpoint_root:
        key = checkpoint_key(
            config_to_dict(config),
            Path(base_model_dir),
            adapter,
            module,
            _data_identity(corpus, pairs, eval_set),
            package_versions().get("mongars-mlops", "source"),
        )
        name = f"llm2vec-{module}-{key}"
        # Data-parallel ranks share one mirror of a gs:// root; rank 0 alone writes (resume.py).
        mirror_dir = shared_dir(name) if world.distributed else None
        store = CheckpointStore(config.checkpoint_root, name, mirror_dir=mirror_dir)
        run.checkpoints = Llm2VecCheckpoints(store, config.save_steps, world)
    try:
        if run.checkpoints is not None:
            run.resumed = run.checkpoints.resume()
        if run.resumed is not None:
            run.losses = {k: list(v) for k, v in run.resumed.progress.losses.items()}
            run.retrieval = dict(run.resumed.progress.retrieval)
            LOG.info(
                "llm2vec: resuming at %s step %d (checkpoint %s)",
                all_phases[min(run.resumed.progress.phase_index, len(all_phases) - 1)],
                run.resumed.progress.phase_step,
                run.resumed.folder.name,
            )
        model = _run_phases(
            model,
            tokenizer,
            config,
            run,
            corpus,
            pairs,
            eval_set,
            max_length,
            _MntpMasking(mask_token_id, collator_type, mlm_probability),
        )
    finally:
        if run.checkpoints is not None:
            run.checkpoints.store.close()
    retrieval_so_far = run.retrieval
    stages: dict[str, dict[str, Any]] = {p: _loss_summary(run.losses[p]) for p in all_phases}
    stages["mntp"] |= {
        "data_collator_type": collator_type,
        "mlm_probability": mlm_probability,
        "mask_token_id": mask_token_id,
    }
    retrieval: dict[str, Any] = {
        "split": eval_set.split,
        "note": eval_set.note,
        "queries": len(eval_set.queries),
        "passages": len(eval_set.passages),
        **retrieval_so_far,
    }
    retrieval["after"] = retrieval[f"after_{phases[-1]}"]
    LOG.info("llm2vec: retrieval after %s: %s", phases[-1], retrieval["after"])
    stage_steps_run = run.steps_run
    if "supervised" in stages:
        stages["supervised"]["pairs"] = len(pairs)
        stages["supervised"]["batch_size_used"] = min(config.supervised_batch_size, len(pairs))

    settings = {
        "pooling": config.pooling_mode,
        "normalize": True,
        "bidirectional": True,
        "max_length": max_length,
        "query_instruction": config.query_instruction,
        "base_model": str(base_model_dir),
        "sft_adapter": str(adapter) if adapter else None,
        "module": module,
        "model_type": model.config.model_type,
        "hidden_size": int(model.config.hidden_size),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }
    metrics = {
        "module": module,
        "contrastive_mode": config.contrastive_mode,
        "contrastive_phases": phases,
        **stages,
        "retrieval": retrieval,
        "train_texts": len(corpus.texts),
        "text_counts": corpus.counts,
        "train_pairs": len(pairs),
        "excluded_eval_pairs": pairs_excluded,
        "excluded_eval_texts": corpus.excluded,
        "missing_sources": corpus.missing,
        "resumed_from_step": run.resumed.progress.global_step if run.resumed else 0,
        "optimizer_steps_run": stage_steps_run,
        "checkpoint_location": run.checkpoints.store.location if run.checkpoints else "",
    }
    with main_writes(world, out_dir) as scratch:  # rank 0 writes; the others hold the same model
        if scratch is not None:
            encoder_dir = scratch / ENCODER_SUBDIR
            model.config.is_causal = False
            model.save_pretrained(encoder_dir, safe_serialization=True)
            tokenizer.save_pretrained(encoder_dir)
            write_json(scratch / ENCODER_JSON, settings)
            write_json(scratch / "metrics.json", metrics)
            write_json(
                scratch / "training_config.json",
                {"config": config_to_dict(config), "upstream": report.to_dict()},
            )
    summary: dict[str, Any] = {
        "module": module,
        "encoder_dir": str(Path(out_dir) / ENCODER_SUBDIR),
        "pooling": settings["pooling"],
        "max_length": settings["max_length"],
        "base_model": settings["base_model"],
        "model_type": settings["model_type"],
        "device": device,
        "contrastive_phases": ",".join(phases),
        "train_texts": len(corpus.texts),
        "train_pairs": len(pairs),
        "excluded_eval_texts": corpus.excluded,
        "excluded_eval_pairs": pairs_excluded,
        "resumed_from_step": metrics["resumed_from_step"],
        "optimizer_steps_run": stage_steps_run,
    }
    for name, stage in stages.items():
        summary[f"{name}_steps"] = stage["steps"]
        summary[f"{name}_loss_first"] = stage["loss_first"]
        summary[f"{name}_loss_last"] = stage["loss_last"]
    summary.update(
        {
            "mntp_data_collator_type": collator_type,
            "mntp_mlm_probability": mlm_probability,
            "retrieval_queries": len(eval_set.queries),
            "retrieval_passages": len(eval_set.passages),
            "seconds": round(time.monotonic() - started, 2),
        }
    )
    return _flat_metadata(summary, report.flat(), retrieval)
