"""A moved outside source re-runs exactly what reads it (kfp.local, caching on).

resolve_sources runs on every run and turns the sources into revision *parameters* of the cached
tasks (monGARS.mlops.sources): unchanged sources leave every other task a cache hit; a changed
dataset file rebuilds the datasets and what trains on them, while the base model stays cached.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_a_changed_dataset_source_reruns_only_its_readers(tmp_path: Path) -> None:
    from monGARS.deploy.local_run import run_local
    from monGARS.mlops.datasets.readers import package_path
    from monGARS.mlops.datasets.records import KINDS

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for kind in KINDS:
        shutil.copyfile(package_path(f"mongars://sample_fr/{kind}.jsonl"), corpus / f"{kind}.jsonl")
    parameters = {
        "max_steps": 2,
        "sft_config": {"eval_steps": 2, "save_steps": 2, "logging_steps": 1},
        "datasets_config": {
            "module_map": ["*=platform"],
            "sources": [{"uri": str(corpus / f"{kind}.jsonl"), "kind": kind} for kind in KINDS],
        },
    }
    runs = tmp_path / "runs"

    def run() -> object:
        return run_local("sources", parameters, runs_root=runs, last_stage="sft")

    first = run()
    assert {"resolve-sources", "fetch-base-model", "build-datasets", "sft"} <= set(first.executed)

    unchanged = run()
    assert unchanged.executed == ["resolve-sources"]
    assert {"fetch-base-model", "build-datasets", "sft", "report"} <= set(unchanged.cached)

    lines = (corpus / "instruction.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (corpus / "instruction.jsonl").write_text("".join(lines[:-1]), encoding="utf-8")
    moved = run()
    assert {"resolve-sources", "build-datasets", "sft", "report"} <= set(moved.executed)
    assert "fetch-base-model" in moved.cached and "fetch-base-model" not in moved.executed
    assert moved.outputs["datasets"] != first.outputs["datasets"]
