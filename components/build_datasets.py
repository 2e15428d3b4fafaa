"""build_datasets: French corpora and per-module code datasets; outputs the module list."""

from kfp import dsl

from monGARS.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def build_datasets(
    datasets_config: dict,
    languages: list[str],
    val_split: float,
    split_seed: int,
    source_revisions: dict,
    datasets: dsl.Output[dsl.Dataset],
    summary: dsl.Output[dsl.Markdown],
    stage_summary: dsl.Output[dsl.Artifact],
) -> list[str]:
    """Build every corpus and module dataset; return the module names the pipeline fans out over.

    ``source_revisions`` (from resolve_sources) puts each source's current revision into this
    task's cache key: a changed source rebuilds, an unchanged one stays a cache hit.
    """
    parameters = dict(locals())  # every argument, by its pipeline name: the library folds them
    from monGARS.mlops import stages
    from monGARS.mlops.artifacts import publish, stage_errors

    with stage_errors("build_datasets"):
        modules, metadata = stages.run_build_datasets(parameters, datasets.path, summary.path)
    publish(datasets, metadata)
    stages.run_stage_summary("build_datasets", "", datasets.path, datasets.uri, stage_summary.path)
    return modules
