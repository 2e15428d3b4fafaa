"""evaluate: score a module's deployable GGUF files on its held-out split, base → tuned, on CPU."""

from kfp import dsl

from monGARS.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluate(
    gguf: dsl.Input[dsl.Model],
    chat_model: dsl.Input[dsl.Model],
    base_model: dsl.Input[dsl.Model],
    datasets: dsl.Input[dsl.Dataset],
    module: str,
    eval_max_examples: int,
    eval_answer_length: int,
    evaluate_config: dict,
    evaluation: dsl.Output[dsl.Artifact],
    metrics: dsl.Output[dsl.Metrics],
    stage_summary: dsl.Output[dsl.Artifact],
) -> None:
    """Write a small evaluation artifact (figures, items), its report summary and metrics."""
    parameters = dict(locals())  # every argument, by its pipeline name: the library folds them
    from monGARS.mlops import stages
    from monGARS.mlops.artifacts import log_metrics, publish, stage_errors

    with stage_errors("evaluate"):
        metadata = stages.run_evaluate(
            parameters,
            gguf.path,
            chat_model.path,
            base_model.path,
            datasets.path,
            module,
            evaluation.path,
        )
    publish(evaluation, metadata)
    log_metrics(metrics, metadata)
    stages.run_stage_summary(
        "evaluate", module, evaluation.path, evaluation.uri, stage_summary.path
    )
