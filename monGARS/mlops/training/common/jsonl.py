"""Reading the JSONL files build_datasets writes, with one error format for every stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monGARS.mlops.errors import MongarsError


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read one JSON object per line, naming the file and line of the first bad one."""
    records: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise MongarsError(f"datasets: {path} is missing; run build_datasets first") from None
    except (OSError, UnicodeDecodeError) as error:
        raise MongarsError(f"datasets: {path} cannot be read ({error})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise MongarsError(f"datasets: {path}:{number} is not JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise MongarsError(f"datasets: {path}:{number} is not a JSON object")
        records.append(record)
    return records
