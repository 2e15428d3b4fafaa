"""fetch_base_model: materialise the base model once, as a cached ``dsl.Model`` artifact."""

from kfp import dsl

from monGARS.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def fetch_base_model(base_model: str, model: dsl.Output[dsl.Model]) -> None:
    """Resolve ``base_model`` (``tiny``, a folder, ``gs://`` or a hub id) into a model folder."""
    from monGARS.mlops import stages
    from monGARS.mlops.artifacts import publish, stage_errors

    with stage_errors("fetch_base_model"):
        publish(model, stages.run_fetch_base_model(base_model, model.path))
