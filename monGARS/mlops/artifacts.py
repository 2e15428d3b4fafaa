"""Glue between library results and KFP artifacts, without importing kfp.

Components hand their ``dsl.Artifact`` objects to these helpers; anything with a ``metadata`` dict
(and ``log_metric`` for metrics) works, so the helpers are testable with plain objects.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from monGARS.mlops.errors import MongarsError, describe_write_error


class HasMetadata(Protocol):
    metadata: dict[str, Any]


class LogsMetrics(Protocol):
    def log_metric(self, metric: str, value: float) -> None: ...


def _metadata_value(value: Any) -> str | int | float | bool:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return json.dumps(value, sort_keys=True, default=str)


def publish(artifact: HasMetadata, metadata: Mapping[str, Any]) -> None:
    """Copy flat metadata onto an artifact (nested values become JSON strings)."""
    for key, value in metadata.items():
        artifact.metadata[key] = _metadata_value(value)


def log_metrics(metrics: LogsMetrics, values: Mapping[str, Any], prefix: str = "") -> None:
    """Log every finite number in ``values`` as a KFP metric (strings, None and NaN are skipped).

    The figures are also written to the artifact's file: a Metrics artifact with no file looks
    missing to kfp.local's cache, which would then re-run the task every time.
    """
    logged: dict[str, float] = {}
    for key, value in sorted(values.items()):
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            logged[f"{prefix}{key}"] = float(value)
            metrics.log_metric(f"{prefix}{key}", float(value))
    path = getattr(metrics, "path", None)
    if path:
        from monGARS.mlops.atomic import write_json

        write_json(path, logged)


@contextlib.contextmanager
def stage_errors(stage: str) -> Iterator[None]:
    """Turn a user mistake into one clear line in the task log and exit code 2, no traceback."""
    try:
        yield
    except MongarsError as error:
        print(f"error: {stage}: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except Exception as error:
        message = describe_write_error(error)
        if message is None:
            raise
        print(f"error: {stage}: {message}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
