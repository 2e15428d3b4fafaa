"""export: merge adapters, write GGUF (f16 + quantised), verify every file with llama.cpp."""

from kfp import dsl

from monGARS.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def export(
    chat_model: dsl.Input[dsl.Model],
    module: str,
    export_method: str,
    quant_types: list[str],
    export_cmd: str,
    export_config: dict,
    gguf: dsl.Output[dsl.Model],
    metrics: dsl.Output[dsl.Metrics],
    stage_summary: dsl.Output[dsl.Artifact],
    encoder: dsl.Input[dsl.Model] = None,
) -> None:
    """Write and verify the module's merged chat model and encoder as GGUF files plus a bundle."""
    parameters = dict(locals())  # every argument, by its pipeline name: the library folds them
    from monGARS.mlops import stages
    from monGARS.mlops.artifacts import log_metrics, publish, stage_errors

    with stage_errors("export"):
        metadata = stages.run_export(
            parameters,
            chat_model.path,
            encoder.path if encoder is not None else None,
            module,
            gguf.path,
        )
    publish(gguf, metadata)
    log_metrics(metrics, metadata)
    stages.run_stage_summary("export", module, gguf.path, gguf.uri, stage_summary.path)
