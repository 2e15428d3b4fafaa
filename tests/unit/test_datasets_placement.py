"""build_datasets asks the cluster for the CPUs its default worker count will use."""

from __future__ import annotations

import math

import yaml

from monGARS.pipelines.compile import COMPILED_PIPELINE
from monGARS.pipelines.placement import RESOURCES


def _cpus(quantity: str | float) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_build_datasets_requests_every_cpu_its_workers_use() -> None:
    request, limit, _, _ = RESOURCES["build_datasets"]
    # DatasetsConfig.workers=0 starts ceil(cgroup CPU limit) workers: each needs a guaranteed CPU.
    assert _cpus(request) == _cpus(limit) == math.ceil(_cpus(limit)) >= 2
    spec = yaml.safe_load(COMPILED_PIPELINE.read_text(encoding="utf-8").split("\n---\n")[0])
    executors = spec["deploymentSpec"]["executors"]
    (label,) = [name for name in executors if "build-datasets" in name]
    resources = executors[label]["container"]["resources"]
    assert resources["cpuRequest"] == resources["cpuLimit"] == _cpus(limit)
