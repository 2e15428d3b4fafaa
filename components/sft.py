"""sft: QLoRA fine-tuning of one module (Unsloth on CUDA, transformers + peft + trl elsewhere)."""

from kfp import dsl

from monGARS.components.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def sft(
    base_model: dsl.Input[dsl.Model],
    datasets: dsl.Input[dsl.Dataset],
    module: str,
    lora_r: int,
    lora_alpha: int,
    lora_dropout: float,
    epochs: float,
    max_steps: int,
    batch_size: int,
    learning_rate: float,
    vram_budget_mb: int,
    seed: int,
    checkpoint_root: str,
    sft_config: dict,
    adapter: dsl.Output[dsl.Model],
    metrics: dsl.Output[dsl.Metrics],
    loss_curve: dsl.Output[dsl.HTML],
    stage_summary: dsl.Output[dsl.Artifact],
) -> None:
    """Train a LoRA adapter for ``module``; ``sft_config`` overrides any other hyperparameter."""
    parameters = dict(locals())  # every argument, by its pipeline name: the library folds them
    from monGARS.mlops import stages
    from monGARS.mlops.artifacts import log_metrics, publish, stage_errors

    with stage_errors("sft"):
        metadata = stages.run_sft(
            parameters,
            base_model.path,
            datasets.path,
            module,
            adapter.path,
            loss_curve.path,
            base_model_name=base_model.metadata.get("base_model"),
        )
    publish(adapter, metadata)
    log_metrics(metrics, metadata)
    stages.run_stage_summary("sft", module, adapter.path, adapter.uri, stage_summary.path)
