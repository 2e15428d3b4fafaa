"""Compile the pipeline to its committed YAML, and tell whether the committed copy is stale."""

from __future__ import annotations

import ast
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

COMPILED_PIPELINE = Path(__file__).resolve().parent / "mongars.yaml"
_HEADER_DEFAULT = re.compile(r"^(#\s+\w+: \w+ \[Default: )(.*)(\])$")


def _normalise_header(text: str) -> str:
    """Sort the keys of dict defaults in the compiler's comment header.

    kfp renders dict defaults there in protobuf map order, which changes from run to run; the
    YAML body is already stable. Sorting makes the committed file byte-reproducible.
    """
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if not line.startswith("#"):
            break
        match = _HEADER_DEFAULT.match(line)
        if match is None:
            continue
        try:
            default = ast.literal_eval(match.group(2))
        except (ValueError, SyntaxError):
            continue
        lines[index] = f"{match.group(1)}{json.dumps(default, sort_keys=True)}{match.group(3)}"
    return "\n".join(lines)


class BackendRuleError(ValueError):
    """The compiled pipeline breaks a rule of the KFP backend's driver; nothing was written."""


def retry_window_problems(spec: dict[str, Any], hours: int) -> list[str]:
    """Tasks whose retry window (``backoffMaxDuration``) is shorter than ``hours``.

    kfp SDKs before 2.17 cap ``backoff_max_duration`` at 3600 s when they write the IR
    (kubeflow/pipelines ``sdk/python/kfp/dsl/structures.py: RetryPolicy.to_proto``, until
    "remove max duration limit on retries", #13452); compiled with one, a multi-hour GPU stage
    would silently lose its retries (placement.place_on_gpu says why), so the compile is refused.
    """
    problems = []
    components = [spec["root"], *(spec.get("components") or {}).values()]
    for component in components:
        for name, task in sorted(((component.get("dag") or {}).get("tasks") or {}).items()):
            retry = task.get("retryPolicy")
            if not retry:
                continue
            window = str(retry.get("backoffMaxDuration", "0s"))
            seconds = int(window.removesuffix("s")) if window.removesuffix("s").isdigit() else 0
            if seconds < hours * 3600:
                problems.append(
                    f"{name}: retry window {window} is shorter than {hours} h; the kfp SDK caps "
                    "it below 2.17: install kfp>=2.17 (pyproject.toml pins it)"
                )
    return problems


def compile_pipeline(output: str | Path = COMPILED_PIPELINE, options: Any = None) -> Path:
    """Compile the full pipeline to ``output``, refusing YAML the KFP backend could not run.

    ``options`` is a ``PipelineOptions`` (accelerator, fan-out); the committed YAML uses the
    defaults. The result is checked with ``monGARS.pipelines.backend_rules`` before it is written.
    """
    import yaml
    from kfp import compiler

    from monGARS.pipelines.backend_rules import check_pipeline
    from monGARS.pipelines.mongars_pipeline import build_pipeline
    from monGARS.pipelines.options import PipelineOptions

    options = options or PipelineOptions()
    pipeline = build_pipeline(options=options)
    target = Path(output)
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "pipeline.yaml"
        compiler.Compiler().compile(pipeline, str(raw))
        text = _normalise_header(raw.read_text(encoding="utf-8"))
    spec, *rest = list(yaml.safe_load_all(text))
    problems = check_pipeline(spec, rest[0] if rest else None)
    problems += retry_window_problems(spec, options.gpu_retry_window_hours)
    if problems:
        raise BackendRuleError(
            f"the compiled pipeline would fail on the KFP backend ({len(problems)} problems): "
            + "; ".join(problems)
        )
    target.write_text(text, encoding="utf-8")
    return target


def is_up_to_date(committed: str | Path = COMPILED_PIPELINE) -> bool:
    """True when compiling now gives exactly the committed file."""
    committed_path = Path(committed)
    if not committed_path.is_file():
        return False
    with tempfile.TemporaryDirectory() as scratch:
        fresh = compile_pipeline(Path(scratch) / "mongars.yaml")
        return fresh.read_bytes() == committed_path.read_bytes()


if __name__ == "__main__":
    compile_pipeline(sys.argv[1] if len(sys.argv) > 1 else COMPILED_PIPELINE)
