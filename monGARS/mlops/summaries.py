"""Small per-stage summaries: what the report reads, instead of the stages' large artifacts.

On the KFP backend the v2 launcher copies every input artifact of a task, each item of a collected
list too, to node-local disk before the program starts (kubeflow/pipelines
``backend/src/v2/component/launcher_v2.go: downloadArtifacts``), whether the program reads it or
not. A report fed the merged encoders and GGUF bundles would download tens of GB per module to
read a few JSON files. So each stage also writes a *stage summary*: one JSON file holding the
small JSON files the report reads from its artifact, the names of the artifact's top-level files
(for links) and the artifact's URI (``gs://``, ``s3://``, ``minio://`` on a cluster; a local path
in kfp.local), so the report links to the object store, not to a path inside its own pod.

Adding a stage to the report: give it a ``stage_summary`` output written with
``write_stage_summary`` and collect it into the report task; ``report.gather`` files every summary
by its ``stage`` and ``module``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import write_json
from monGARS.mlops.errors import MongarsError

# What each stage's summary carries from its artifact folder: the small JSON files the report
# reads (never weights, datasets or GGUF files).
SUMMARY_FILES: dict[str, tuple[str, ...]] = {
    "build_datasets": ("summary.json", "modules.json"),
    "sft": ("metrics.json", "training_config.json"),
    "llm2vec": ("metrics.json", "encoder.json"),
    "raft": ("metrics.json", "training_config.json"),
    "export": ("bundle.json", "verification.json"),
    "evaluate": ("evaluation.json",),
}
# A summary is read by one small pod: refuse anything that is not small.
MAX_SUMMARY_BYTES = 4 * 1024 * 1024


def read_json_document(path: Path) -> Any:
    """The JSON at ``path``, or None when it is missing or broken."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_stage_summary(
    stage: str,
    module: str,
    artifact_dir: str | Path,
    artifact_uri: str,
    out_path: str | Path,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``out_path``: the stage's small JSON files, file names and artifact URI."""
    if stage not in SUMMARY_FILES:
        raise ValueError(f"stage must be one of {', '.join(SUMMARY_FILES)}; got {stage!r}")
    folder = Path(artifact_dir)
    files = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
    documents = {
        name: content
        for name in SUMMARY_FILES[stage]
        if (content := read_json_document(folder / name)) is not None
    }
    summary = {
        "stage": stage,
        "module": module,
        "uri": artifact_uri or str(folder),
        "files": [name for name in files if not name.startswith(".")],
        "documents": documents,
        **dict(extra or {}),
    }
    size = len(json.dumps(summary, default=str).encode())
    if size > MAX_SUMMARY_BYTES:
        raise MongarsError(
            f"{stage} summary: {size} bytes is more than {MAX_SUMMARY_BYTES}; the report reads "
            "summaries only, keep large data in the stage's artifact"
        )
    write_json(out_path, summary)
    return summary


def read_summaries(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every readable summary among ``paths`` (a missing or broken one is skipped)."""
    summaries = []
    for path in paths:
        content = read_json_document(Path(path))
        if isinstance(content, dict) and isinstance(content.get("stage"), str):
            summaries.append(content)
    return summaries


def join_uri(base: str, name: str) -> str:
    """``base``/``name`` for an object-store URI or a local path."""
    if not base:
        return name
    return f"{base.rstrip('/')}/{name}"
