"""resolve_sources: what the run reads from outside, resolved into revisions (never cached)."""

from typing import NamedTuple

from kfp import dsl

from monGARS.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def resolve_sources(
    base_model: str,
    datasets_config: dict,
) -> NamedTuple("Revisions", [("base_model_revision", str), ("dataset_revisions", dict)]):
    """Resolve the base model's and every dataset source's current revision.

    The revisions are output *parameters*: the cached fetch and build_datasets tasks take them as
    inputs, so an unchanged revision keeps them cache hits and a moved one re-runs them.
    """
    parameters = dict(locals())  # every argument, by its pipeline name: the library folds them
    from collections import namedtuple

    from monGARS.mlops import stages
    from monGARS.mlops.artifacts import stage_errors
    from monGARS.mlops.sources import describe

    with stage_errors("resolve_sources"):
        resolved = stages.run_resolve_sources(parameters)
    print(f"resolved: {describe(resolved)}", flush=True)
    revisions = namedtuple("Revisions", ["base_model_revision", "dataset_revisions"])
    return revisions(resolved["base_model_revision"], resolved["dataset_revisions"])
