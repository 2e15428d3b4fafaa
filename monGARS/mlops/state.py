"""``runs/<run-id>/state.json``: what a local run produced, and the history of its attempts.

The runbook's users read it to find datasets, adapters, encoders and GGUF files; re-running the
same run id appends to its history (resuming is running again: finished stages are cache hits).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import write_json
from monGARS.mlops.errors import MongarsError

STATE_FILE = "state.json"
STATE_VERSION = 1


def state_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / STATE_FILE


def load_state(run_dir: str | Path) -> dict[str, Any]:
    """The run's state, ``{}`` for a new run; a clear error when the file is unreadable."""
    path = state_path(run_dir)
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise MongarsError(
            f"state: {path} cannot be read ({reason}); move it aside or use another --run-id"
        ) from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise MongarsError(
            f"state: {path} is not a monGARS state file (version {STATE_VERSION}); "
            "move it aside or use another --run-id"
        )
    return state


def save_state(
    run_dir: str | Path,
    run_id: str,
    attempt: dict[str, Any],
    outputs: dict[str, Any] | None,
) -> Path:
    """Append ``attempt`` to the history and, when the run finished, record its outputs."""
    state = load_state(run_dir) or {"version": STATE_VERSION, "run_id": run_id, "history": []}
    state["history"].append(attempt)
    if outputs is not None:
        state["last_stage"] = attempt.get("last_stage", "")
        state["datasets"] = outputs.get("datasets", "")
        state["report"] = outputs.get("report", "")
        state["modules"] = outputs.get("modules", {})
    return write_json(state_path(run_dir), state)
