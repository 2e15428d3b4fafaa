"""report: one HTML page and metrics for the whole run, shown in the Kubeflow UI."""

from kfp import dsl

from monGARS.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def report(
    run_name: str,
    datasets: dsl.Input[dsl.Dataset],
    report_html: dsl.Output[dsl.HTML],
    metrics: dsl.Output[dsl.Metrics],
    sft_adapters: dsl.Input[list[dsl.Model]] = None,
    encoders: dsl.Input[list[dsl.Model]] = None,
    ggufs: dsl.Input[list[dsl.Model]] = None,
    evaluations: dsl.Input[list[dsl.Artifact]] = None,
    promotion: dsl.Input[dsl.Artifact] = None,
) -> str:
    """Gather every stage's figures; return a JSON summary of artifact locations per module."""
    from monGARS.mlops import stages
    from monGARS.mlops.artifacts import log_metrics, stage_errors

    def locations(artifacts):
        return [artifact.path for artifact in artifacts or []]

    with stage_errors("report"):
        summary, figures = stages.run_report(
            run_name,
            datasets.path,
            locations(sft_adapters),
            locations(encoders),
            locations(ggufs),
            report_html.path,
            locations(evaluations),
            promotion.path if promotion is not None else None,
        )
    log_metrics(metrics, figures)
    return summary
