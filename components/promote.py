"""promote: gate every evaluated module and publish the winners to the champion registry."""

from kfp import dsl

from monGARS.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def promote(
    evaluations: dsl.Input[list[dsl.Artifact]],
    ggufs: dsl.Input[list[dsl.Model]],
    champion_registry: str,
    promote_min_gain: float,
    promote_tolerance: float,
    promote_min_french_share: float,
    promote_config: dict,
    run_id: str,
    job_name: str,
    image: str,
    promotion: dsl.Output[dsl.Artifact],
    metrics: dsl.Output[dsl.Metrics],
) -> str:
    """Decide per module (promoted or rejected, with reasons); return the outcome lines."""
    parameters = dict(locals())  # every argument, by its pipeline name: the library folds them
    from monGARS.mlops import stages
    from monGARS.mlops.artifacts import log_metrics, publish, stage_errors
    from monGARS.mlops.evaluate.promote import flat_metrics, outcome_lines

    with stage_errors("promote"):
        record = stages.run_promote(
            parameters,
            [artifact.path for artifact in evaluations],
            [artifact.path for artifact in ggufs],
            {"run_id": run_id, "job_name": job_name, "image": image},
            promotion.path,
        )
    publish(promotion, flat_metrics(record))
    log_metrics(metrics, flat_metrics(record))
    return "\n".join(outcome_lines(record))
