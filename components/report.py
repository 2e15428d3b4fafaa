"""report: one HTML page and metrics for the whole run, shown in the Kubeflow UI."""

from kfp import dsl

from monGARS.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def report(
    run_name: str,
    datasets_summary: dsl.Input[dsl.Artifact],
    report_html: dsl.Output[dsl.HTML],
    metrics: dsl.Output[dsl.Metrics],
    sft_summaries: dsl.Input[list[dsl.Artifact]] = None,
    llm2vec_summaries: dsl.Input[list[dsl.Artifact]] = None,
    export_summaries: dsl.Input[list[dsl.Artifact]] = None,
    evaluation_summaries: dsl.Input[list[dsl.Artifact]] = None,
    promotion: dsl.Input[dsl.Artifact] = None,
) -> str:
    """Gather every stage's figures from its small summary; return the run's artifact URIs as JSON.

    Only stage summaries come in: the KFP launcher downloads every input artifact before the
    program starts, so the models and GGUF files stay out of this pod.
    """
    from monGARS.mlops import stages
    from monGARS.mlops.artifacts import log_metrics, stage_errors

    collected = (sft_summaries, llm2vec_summaries, export_summaries, evaluation_summaries)
    paths = [artifact.path for group in collected for artifact in group or []]
    with stage_errors("report"):
        summary, figures = stages.run_report(
            run_name,
            datasets_summary.path,
            paths,
            report_html.path,
            report_html.uri,
            promotion.path if promotion is not None else None,
        )
    log_metrics(metrics, figures)
    return summary
