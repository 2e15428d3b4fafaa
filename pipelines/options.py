"""Compile-time options of the pipeline (``mongars compile`` flags); stdlib only."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Kubernetes object names (a Secret's name is a DNS-1123 subdomain).
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class PipelineOptions:
    """What is fixed when the pipeline is compiled (``mongars compile`` flags).

    ``accelerator_type``/``accelerator_count``: what each GPU task requests (the KFP driver cannot
    take them from a run parameter inside the per-module loop); the GPU pool itself is chosen per
    run with ``gpu_node_selector``/``gpu_tolerations``. ``parallelism``: how many modules run at
    once (0 = all); each running module holds one GPU task and then a CPU merge/export task.
    ``gpu_retry_window_hours``: how long after a GPU task's *first* attempt started a retry may
    still start and run (Argo measures ``backoffMaxDuration`` from the first attempt and uses it
    as the retry's deadline; placement.py says where). ``image_pull_secrets``: Secrets of type
    ``kubernetes.io/dockerconfigjson`` every pod uses to pull the project's images from a private
    registry.
    """

    accelerator_type: str = "nvidia.com/gpu"
    accelerator_count: int = 1
    parallelism: int = 4
    gpu_retry_window_hours: int = 72
    image_pull_secrets: tuple[str, ...] = ()

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
        if (
            isinstance(self.gpu_retry_window_hours, bool)
            or not isinstance(self.gpu_retry_window_hours, int)
            or not 1 <= self.gpu_retry_window_hours <= 720
        ):
            found.append(
                f"gpu_retry_window_hours: {self.gpu_retry_window_hours!r} is not 1-720 hours; "
                "give the longest a GPU stage may take, retries included"
            )
        for name in self.image_pull_secrets:
            if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
                found.append(
                    f"image_pull_secrets: {name!r} is not a Kubernetes Secret name (lowercase "
                    "letters, digits, '-' and '.')"
                )
        return found
