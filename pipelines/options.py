"""Compile-time options of the pipeline (``mongars compile`` flags); stdlib only."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PipelineOptions:
    """What is fixed when the pipeline is compiled (``mongars compile`` flags).

    ``accelerator_type``/``accelerator_count``: what each GPU task requests (the KFP driver cannot
    take them from a run parameter inside the per-module loop); the GPU pool itself is chosen per
    run with ``gpu_node_selector``/``gpu_tolerations``. ``parallelism``: how many modules run at
    once (0 = all); each running module holds one GPU task and then a CPU merge/export task.
    """

    accelerator_type: str = "nvidia.com/gpu"
    accelerator_count: int = 1
    parallelism: int = 4

    def problems(self) -> list[str]:
        found = []
        if not self.accelerator_type or "/" not in self.accelerator_type:
            found.append(
                f"accelerator_type: {self.accelerator_type!r} is not a Kubernetes extended "
                "resource name such as nvidia.com/gpu"
            )
        if isinstance(self.accelerator_count, bool) or not 1 <= self.accelerator_count <= 16:
            found.append(f"accelerator_count: {self.accelerator_count!r} is not 1-16")
        if isinstance(self.parallelism, bool) or not 0 <= self.parallelism <= 256:
            found.append(f"parallelism: {self.parallelism!r} is not 0 (no limit) to 256")
        return found
