"""Compile the pipeline to its committed YAML, and tell whether the committed copy is stale."""

from __future__ import annotations

import ast
import json
import re
import sys
import tempfile
from pathlib import Path

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


def compile_pipeline(output: str | Path = COMPILED_PIPELINE) -> Path:
    from kfp import compiler

    from pipelines.mongars_pipeline import mongars_pipeline

    target = Path(output)
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "pipeline.yaml"
        compiler.Compiler().compile(mongars_pipeline, str(raw))
        target.write_text(_normalise_header(raw.read_text(encoding="utf-8")), encoding="utf-8")
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
