"""``runs/<run-id>/state.json``: what a local run produced, and the history of its attempts.

The runbook's users read it to find datasets, adapters, encoders and GGUF files; re-running the
same run id appends to its history (resuming is running again: finished stages are cache hits).
Next to the artifact locations (``datasets``, ``report``, ``modules.<m>.sft_adapter``...) it keeps
the runbook's fields, as paths through the run folder's runbook view (``french_datasets_dir``,
``modules.<m>.train_path``/``train_count``/``adapter_path``/``current_model_dir``...; see
:mod:`monGARS.mlops.run_layout`).

It is also the memory of the run's parameters: ``parameters`` holds what the run's latest command
ran with (the values it was given, those it carried over, and the base model), and the next
command on the same run id carries every declared parameter it is not given from there
(:func:`carry_over`), so its upstream tasks are the cache hits of what the user actually ran.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import write_json
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.parameters import BY_NAME, PARAMETERS
from monGARS.mlops.run_layout import refresh_layout, runbook_fields

STATE_FILE = "state.json"
STATE_VERSION = 1
REBUILD_ADVICE = "rebuild it with --build-datasets (the unreadable file is moved aside)"


def state_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / STATE_FILE


def _read(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise MongarsError(
            f"state: {path} cannot be read ({reason}); {REBUILD_ADVICE}, or use another --run-id"
        ) from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise MongarsError(
            f"state: {path} is not a monGARS state file (version {STATE_VERSION}); "
            f"{REBUILD_ADVICE}, or use another --run-id"
        )
    return state


def load_state(run_dir: str | Path) -> dict[str, Any]:
    """The run's state, ``{}`` for a new run; a clear error when the file is unreadable."""
    path = state_path(run_dir)
    if not path.exists():
        return {}
    return _read(path)


def set_aside_unreadable_state(run_dir: str | Path) -> Path | None:
    """Move an unreadable ``state.json`` aside (``state.json.unreadable-<UTC time>``).

    What ``--build-datasets`` does before a run, so the runbook's advice for a corrupted state
    works; returns where the file went, ``None`` when the state was readable or absent.
    """
    path = state_path(run_dir)
    if not path.exists():
        return None
    try:
        _read(path)
    except MongarsError:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = path.with_name(f"{STATE_FILE}.unreadable-{stamp}")
        os.replace(path, aside)
        return aside
    return None


def declared_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline parameters among ``parameters``: names the table declares, nothing else.

    What ``state.json`` records and carries: a key no ``Parameter`` declares (a stray config-file
    key, a secret) never reaches the file.
    """
    return {name: value for name, value in parameters.items() if name in BY_NAME}


def recorded_parameters(state: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters the run's latest command ran with, as ``state.json`` records them."""
    recorded = state.get("parameters")
    return declared_parameters(recorded) if isinstance(recorded, dict) else {}


def carry_over(
    recorded: Mapping[str, Any], given: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A command's parameters: those ``given`` now, and for every other declared parameter the
    value the run recorded. Returns ``(parameters, carried)``, ``carried`` being what came from
    the record.

    A parameter is the unit: a dict given now (a config file) replaces the recorded one whole, as
    a flag replaces a number. Every parameter of ``monGARS.mlops.parameters.PARAMETERS`` is
    carried; keys the table does not declare pass through from ``given`` only.
    """
    parameters = dict(given)
    carried: dict[str, Any] = {}
    for parameter in PARAMETERS:
        if parameter.name not in given and parameter.name in recorded:
            value = json.loads(json.dumps(recorded[parameter.name]))  # never shared with the state
            parameters[parameter.name] = carried[parameter.name] = value
    return parameters, carried


def save_state(
    run_dir: str | Path,
    run_id: str,
    attempt: dict[str, Any],
    outputs: dict[str, Any] | None,
    parameters: Mapping[str, Any] | None = None,
) -> Path:
    """Append ``attempt`` to the history and, when the run finished, record its outputs.

    A finished attempt also refreshes the runbook's view of the run folder (symlinks onto its
    artifacts) and the runbook's fields; a failed one leaves both as the last finished one made.
    ``parameters`` (the command's parameters, what the next command carries over) replace the
    recorded ones whatever the attempt's outcome: a command interrupted or failed midway is the
    one the next command continues.
    """
    state = load_state(run_dir) or {"version": STATE_VERSION, "run_id": run_id, "history": []}
    state["history"].append(attempt)
    if parameters is not None:
        state["parameters"] = declared_parameters(parameters)
    if outputs is not None:
        state["last_stage"] = attempt.get("last_stage", "")
        state["datasets"] = outputs.get("datasets", "")
        state["report"] = outputs.get("report", "")
        state["layout_links"] = refresh_layout(run_dir, outputs, state.get("layout_links", []))
        runbook = runbook_fields(run_dir, outputs, state["layout_links"])
        state["french_datasets_dir"] = runbook["french_datasets_dir"]
        state["internal_datasets_dir"] = runbook["internal_datasets_dir"]
        if outputs.get("promotion"):  # the gate's outcome: promoted / rejected, with reasons
            state["promotion"] = outputs["promotion"]
        state["modules"] = {
            name: {**module, **runbook["modules"].get(name, {})}
            for name, module in (outputs.get("modules") or {}).items()
        }
    return write_json(state_path(run_dir), state)
