"""``mongars schedule``: cron validation, and recurring runs created through kfp.Client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_servers import KfpState, kfp_server

from monGARS.deploy.cli import main
from monGARS.deploy.schedule import parse_cron
from monGARS.mlops.errors import MongarsError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("spec", "expected", "converted"),
    [
        ("0 0 2 * * *", "0 0 2 * * *", False),
        ("0 2 * * *", "0 0 2 * * *", True),  # robfig/cron would read it as minute 2 of every hour
        ("  0   30 1 ? * MON-FRI ", "0 30 1 ? * MON-FRI", False),
        ("0 */15 * * * *", "0 */15 * * * *", False),
        ("0 0 3 1,15 JAN-JUN *", "0 0 3 1,15 JAN-JUN *", False),
        ("@daily", "@daily", False),
        ("@every 6h30m", "@every 6h30m", False),
    ],
)
def test_valid_specs(spec: str, expected: str, converted: bool) -> None:
    schedule = parse_cron(spec)
    assert schedule.cron == expected
    assert bool(schedule.note) == converted


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("0 0 2 * *  * *", "has 7 fields"),
        ("0 60 * * * *", "minutes value 60 is outside 0-59"),
        ("0 0 24 * * *", "hours value 24"),
        ("0 0 0 0 * *", "day of month value 0"),
        ("0 0 0 * 13 *", "month value 13"),
        ("0 0 0 * * FUNDAY", "day of week value 'FUNDAY'"),
        ("? 0 0 * * *", "'?' is only allowed"),
        ("0 */0 * * * *", "step '0'"),
        ("0 0 5-2 * * *", "runs backwards"),
        ("@fortnightly", "unknown descriptor"),
        ("@every soon", "unknown descriptor"),
    ],
)
def test_invalid_specs_name_the_field(spec: str, message: str) -> None:
    with pytest.raises(MongarsError, match=message):
        parse_cron(spec)


@pytest.fixture
def kfp(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, KfpState]]:
    monkeypatch.delenv("KFP_TOKEN", raising=False)
    with kfp_server() as (host, state):
        yield host, state


def _schedule(host: str, *extra: str) -> int:
    package = REPO / "pipelines" / "mongars.yaml"
    assert package.is_file(), "pipelines/mongars.yaml is committed: run `make compile`"
    return main(["schedule", "--host", host, "--package", str(package), *extra])


def test_recurring_run_defaults_catchup_off_and_enabled(
    kfp: tuple[str, KfpState], capsys: pytest.CaptureFixture[str]
) -> None:
    host, state = kfp
    assert _schedule(host, "--cron", "0 2 * * *", "--name", "nightly", "--param", "raft=true") == 0
    (recurring,) = state.recurring_runs.values()
    assert recurring["trigger"] == {"cron_schedule": {"cron": "0 0 2 * * *"}}
    assert recurring["no_catchup"] is True
    assert recurring["mode"] == "ENABLE" and recurring["status"] == "ENABLED"
    assert int(recurring["max_concurrency"]) == 1
    assert recurring["display_name"] == "nightly"
    assert recurring["runtime_config"]["parameters"] == {"raft": True}
    out = capsys.readouterr().out
    assert "converted to KFP's six-field form" in out and "catch-up off" in out


def test_recurring_run_options(kfp: tuple[str, KfpState]) -> None:
    host, state = kfp
    code = _schedule(
        host,
        "--cron",
        "@weekly",
        "--max-concurrency",
        "3",
        "--catchup",
        "--disabled",
        "--start-time",
        "2026-12-01T00:00:00Z",
        "--pipeline-name",
        "mongars",
    )
    assert code == 0
    (recurring,) = state.recurring_runs.values()
    assert recurring["no_catchup"] is False
    assert recurring["mode"] == "DISABLE" and recurring["status"] == "DISABLED"
    assert int(recurring["max_concurrency"]) == 3
    assert recurring["trigger"]["cron_schedule"]["start_time"].startswith("2026-12-01T00:00:00")
    assert recurring["pipeline_version_reference"]["pipeline_version_id"] in state.versions


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "0 61 * * * *"], "--cron: minutes"),
        (["--cron", "@daily", "--max-concurrency", "11"], "--max-concurrency: 11 is outside 1-10"),
        (["--cron", "@daily", "--end-time", "tomorrow"], "--end-time"),
    ],
)
def test_bad_schedules_fail_before_creating_anything(
    kfp: tuple[str, KfpState], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    host, state = kfp
    assert _schedule(host, *args) == 2
    assert message in capsys.readouterr().err
    assert not state.recurring_runs
    assert ("POST", "/apis/v2beta1/experiments") not in state.requests
