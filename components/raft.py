"""raft: retrieval-augmented fine-tuning on top of the module's SFT adapter (optional stage).

The pipeline runs ``raft`` only when the ``raft`` parameter is on; otherwise ``raft_off`` (a tiny
CPU task) stands in its branch, so no GPU is held for a stage that does nothing.
"""

from kfp import dsl

from monGARS.components.images import CPU_IMAGE, GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def raft(
    base_model: dsl.Input[dsl.Model],
    sft_adapter: dsl.Input[dsl.Model],
    encoder: dsl.Input[dsl.Model],
    datasets: dsl.Input[dsl.Dataset],
    module: str,
    seed: int,
    raft_config: dict,
    adapter: dsl.Output[dsl.Model],
    metrics: dsl.Output[dsl.Metrics],
) -> str:
    """Fine-tune on questions with oracle and distractor documents mined by the encoder.

    Returns the reference merge_adapter reads the adapter by (a copy on the shared cache volume).
    """
    parameters = dict(locals())  # every argument, by its pipeline name: the library folds them
    from monGARS.mlops import stages
    from monGARS.mlops.artifacts import log_metrics, publish, stage_errors

    with stage_errors("raft"):
        metadata, reference = stages.run_raft(
            parameters,
            base_model.path,
            sft_adapter.path,
            encoder.path,
            datasets.path,
            module,
            adapter.path,
            base_model_name=base_model.metadata.get("base_model"),
        )
    publish(adapter, metadata)
    log_metrics(metrics, metadata)
    return reference


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def raft_off(module: str) -> str:
    """The raft=false branch: no RAFT adapter for ``module`` (merge_adapter takes the SFT one)."""
    print(f"raft is off: {module} exports its SFT adapter", flush=True)
    return ""
