"""``mongars schedule``: a recurring run of the pipeline (KFP recurring run, cron trigger).

KFP's scheduler reads cron specs with a leading seconds field (robfig/cron: ``sec min hour dom
month dow``). A classic five-field spec would be read shifted by one field ("0 2 * * *" would run
every hour at minute 2), so five-field specs are converted by prepending ``0`` seconds and the
conversion is reported. Catch-up is off by default: a paused schedule that is resumed starts one
run, not one per missed slot.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from monGARS.deploy.kfp_api import KfpTarget, call
from monGARS.deploy.submit import (
    PodsCheck,
    RunRequest,
    connect,
    ensure_experiment,
    pipeline_source,
)
from monGARS.mlops.errors import MongarsError

MAX_CONCURRENCY_LIMIT = 10  # the KFP API server refuses more
_DESCRIPTORS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_MONTH_NAMES = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC"
_MONTHS = {name: index + 1 for index, name in enumerate(_MONTH_NAMES.split())}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
# (field name, low, high, names, allows "?")
_FIELDS: tuple[tuple[str, int, int, dict[str, int], bool], ...] = (
    ("seconds", 0, 59, {}, False),
    ("minutes", 0, 59, {}, False),
    ("hours", 0, 23, {}, False),
    ("day of month", 1, 31, {}, True),
    ("month", 1, 12, _MONTHS, False),
    ("day of week", 0, 6, _DAYS, True),
)


@dataclass(frozen=True)
class Schedule:
    """A validated trigger: the cron spec KFP gets, and a note when it was converted."""

    cron: str
    note: str = ""


def _value(text: str, low: int, high: int, names: dict[str, int], field: str) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
        raise MongarsError(f"--cron: {field} value {text!r} is not a number or a known name")
    number = int(text)
    if not low <= number <= high:
        raise MongarsError(f"--cron: {field} value {number} is outside {low}-{high}")
    return number


def _check_field(text: str, index: int) -> None:
    field, low, high, names, question = _FIELDS[index]
    for part in text.split(","):
        base, slash, step = part.partition("/")
        if slash and (not step.isdigit() or int(step) == 0):
            raise MongarsError(f"--cron: {field} step {step!r} must be a positive number")
        if base in ("*", "?"):
            if base == "?" and not question:
                raise MongarsError("--cron: '?' is only allowed in day of month or day of week")
            continue
        start, dash, end = base.partition("-")
        first = _value(start, low, high, names, field)
        if dash:
            last = _value(end, low, high, names, field)
            if last < first:
                raise MongarsError(f"--cron: {field} range {base!r} runs backwards")


def parse_cron(spec: str) -> Schedule:
    """Validate a cron spec and return it in KFP's six-field form."""
    text = " ".join(spec.split())
    if not text:
        raise MongarsError("--cron: empty; give e.g. '0 0 2 * * *' (02:00 every day)")
    if text.startswith("@"):
        if text in _DESCRIPTORS:
            return Schedule(text)
        every, _, duration = text.partition(" ")
        if every == "@every" and _GO_DURATION.fullmatch(duration):
            return Schedule(text)
        raise MongarsError(
            f"--cron: unknown descriptor {text!r}; use @hourly, @daily, @weekly, @monthly, "
            "@yearly or '@every 6h'"
        )
    fields = text.split(" ")
    note = ""
    if len(fields) == 5:
        fields = ["0", *fields]
        note = (
            f"five-field cron {text!r} converted to KFP's six-field form {' '.join(fields)!r} "
            "(seconds first)"
        )
    if len(fields) != 6:
        raise MongarsError(
            f"--cron: {text!r} has {len(fields)} fields; KFP expects 6 (sec min hour dom month dow)"
        )
    for index, part in enumerate(fields):
        _check_field(part, index)
    return Schedule(" ".join(fields), note)


def _check_time(flag: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MongarsError(
            f"{flag}: {value!r} is not an RFC 3339 time, e.g. 2026-01-31T02:00:00Z"
        ) from None
    return value


@dataclass(frozen=True)
class RecurringResult:
    recurring_run_id: str
    experiment_id: str
    cron: str
    enabled: bool


def schedule(
    target: KfpTarget,
    request: RunRequest,
    *,
    cron: str,
    max_concurrency: int = 1,
    catchup: bool = False,
    enabled: bool = True,
    start_time: str | None = None,
    end_time: str | None = None,
    echo: Callable[[str], None] = print,
    check_pods: PodsCheck | None = None,
) -> RecurringResult:
    """Create a recurring run of the pipeline; ``request.run_name`` names the schedule."""
    trigger = parse_cron(cron)
    if not 1 <= max_concurrency <= MAX_CONCURRENCY_LIMIT:
        raise MongarsError(
            f"--max-concurrency: {max_concurrency} is outside 1-{MAX_CONCURRENCY_LIMIT} "
            "(KFP's limit)"
        )
    start = _check_time("--start-time", start_time)
    end = _check_time("--end-time", end_time)
    if trigger.note:
        echo(f"note: {trigger.note}")
    client = connect(target, request, echo, check_pods)
    experiment_id = ensure_experiment(client, target, request.experiment)
    source = pipeline_source(client, target, request)
    recurring = call(
        target,
        "create recurring run",
        client.create_recurring_run,
        experiment_id=experiment_id,
        job_name=request.run_name,
        description=f"monGARS pipeline {request.package.name}, cron {trigger.cron}",
        start_time=start,
        end_time=end,
        cron_expression=trigger.cron,
        max_concurrency=max_concurrency,
        no_catchup=not catchup,
        params=request.parameters,
        enabled=enabled,
        pipeline_root=request.pipeline_root,
        service_account=request.service_account,
        **source,
    )
    state = "enabled" if enabled else "created disabled"
    echo(
        f"recurring run {recurring.recurring_run_id} {state}: {request.run_name!r}, cron "
        f"{trigger.cron!r}, max concurrency {max_concurrency}, "
        f"catch-up {'on' if catchup else 'off'}"
    )
    return RecurringResult(str(recurring.recurring_run_id), experiment_id, trigger.cron, enabled)
