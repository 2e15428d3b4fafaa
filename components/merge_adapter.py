"""merge_adapter: fold a LoRA adapter into the base weights, giving the module's chat model."""

from kfp import dsl

from monGARS.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def merge_adapter(
    base_model: dsl.Input[dsl.Model],
    adapter: dsl.Input[dsl.Model],
    module: str,
    raft_adapter: str,
    merged: dsl.Output[dsl.Model],
) -> None:
    """Write a standalone HF model folder (dequantised where needed) with an adapter merged in.

    ``adapter`` is the SFT adapter; ``raft_adapter`` is raft's reference to its adapter on the
    shared cache volume when raft ran, '' when it did not (then the SFT adapter is merged).
    """
    from monGARS.mlops import stages
    from monGARS.mlops.artifacts import publish, stage_errors

    with stage_errors("merge_adapter"):
        publish(
            merged,
            stages.run_merge_adapter(
                base_model.path, adapter.path, module, merged.path, raft_adapter
            ),
        )
