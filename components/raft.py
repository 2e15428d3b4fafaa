"""raft: retrieval-augmented fine-tuning on top of the module's SFT adapter (optional stage)."""

from kfp import dsl

from monGARS.components.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def raft(
    base_model: dsl.Input[dsl.Model],
    sft_adapter: dsl.Input[dsl.Model],
    encoder: dsl.Input[dsl.Model],
    datasets: dsl.Input[dsl.Dataset],
    module: str,
    enabled: bool,
    seed: int,
    raft_config: dict,
    adapter: dsl.Output[dsl.Model],
    metrics: dsl.Output[dsl.Metrics],
) -> None:
    """Fine-tune on questions with oracle and distractor documents mined by the encoder.

    With ``enabled`` false the SFT adapter is passed on unchanged (a copy of the adapter only).
    """
    parameters = dict(locals())  # every argument, by its pipeline name: the library folds them
    from monGARS.mlops import stages
    from monGARS.mlops.artifacts import log_metrics, publish, stage_errors

    with stage_errors("raft"):
        metadata = stages.run_raft(
            parameters,
            base_model.path,
            sft_adapter.path,
            encoder.path,
            datasets.path,
            module,
            adapter.path,
            base_model_name=base_model.metadata.get("base_model"),
            enabled=enabled,
        )
    publish(adapter, metadata)
    log_metrics(metrics, metadata)
