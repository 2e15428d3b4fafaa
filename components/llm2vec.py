"""llm2vec: MNTP then SimCSE, turning the module's fine-tuned decoder into a text encoder."""

from kfp import dsl

from monGARS.components.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def llm2vec(
    base_model: dsl.Input[dsl.Model],
    sft_adapter: dsl.Input[dsl.Model],
    datasets: dsl.Input[dsl.Dataset],
    module: str,
    seed: int,
    mntp_config: dict,
    simcse_config: dict,
    llm2vec_config: dict,
    encoder: dsl.Output[dsl.Model],
    metrics: dsl.Output[dsl.Metrics],
    stage_summary: dsl.Output[dsl.Artifact],
) -> None:
    """Train the encoder; the upstream-style MNTP/SimCSE configs map onto the stage config."""
    parameters = dict(locals())  # every argument, by its pipeline name: the library folds them
    from monGARS.mlops import stages
    from monGARS.mlops.artifacts import log_metrics, publish, stage_errors

    with stage_errors("llm2vec"):
        metadata = stages.run_llm2vec(
            parameters, base_model.path, sft_adapter.path, datasets.path, module, encoder.path
        )
    publish(encoder, metadata)
    log_metrics(metrics, metadata)
    stages.run_stage_summary("llm2vec", module, encoder.path, encoder.uri, stage_summary.path)
