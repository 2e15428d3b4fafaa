"""Fill one gap of ``kfp.local`` 2.17.3: ``dsl.OneOf`` over artifacts.

The local orchestrator resolves ``dsl.OneOf`` for parameters but refuses it for artifacts
("Expected 1 artifact in ArtifactSelectorSpec"). The pipeline needs it to hand export the RAFT or
the SFT chat model. This resolves artifact selectors the way kfp.local already resolves parameter
selectors: the one branch that produced an output wins. The KFP backend supports it natively, so
the patch is applied only by the local driver and only on the kfp version it was written for.
"""

from __future__ import annotations

from typing import Any

PATCHED_KFP_VERSION = "2.17.3"


def _dag_output_artifacts(cls: Any, dag_outputs_spec: Any, io_store: Any) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    for output_key, selector_spec in dag_outputs_spec.artifacts.items():
        produced = []
        for selector in selector_spec.artifact_selectors:
            try:
                produced.append(
                    io_store.get_task_output(
                        selector.producer_subtask, selector.output_artifact_key
                    )
                )
            except (KeyError, ValueError):
                continue  # this branch of the condition did not run
        if len(produced) != 1:
            raise ValueError(
                f"output {output_key!r}: expected exactly one producing branch, got {len(produced)}"
            )
        outputs[output_key] = produced[0]
    return outputs


def enable_oneof_artifacts() -> bool:
    """Patch kfp.local when it is the version this was written for; return whether it did."""
    import kfp
    from kfp.local.orchestrator import orchestrator_utils

    if kfp.__version__ != PATCHED_KFP_VERSION:
        return False
    orchestrator_utils.OrchestratorUtils.get_dag_output_artifacts = classmethod(
        _dag_output_artifacts
    )
    return True
