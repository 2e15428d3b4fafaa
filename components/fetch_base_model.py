"""fetch_base_model: materialise the base model once, as a cached ``dsl.Model`` artifact."""

from kfp import dsl

from monGARS.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def fetch_base_model(base_model: str, revision: str, model: dsl.Output[dsl.Model]) -> None:
    """Resolve ``base_model`` (``tiny``, a folder, ``gs://`` or a hub id) into a model folder.

    ``revision`` is what resolve_sources found (a hub commit, a digest or generation): it puts the
    source's current state into this task's cache key, and a hub id is fetched at that commit.
    """
    from monGARS.mlops import stages
    from monGARS.mlops.artifacts import publish, stage_errors

    with stage_errors("fetch_base_model"):
        publish(model, stages.run_fetch_base_model(base_model, model.path, revision))
