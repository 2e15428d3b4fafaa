"""Puts the cases a reliability test recorded on its report (tests/reliability/tally.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability.tally import PENDING, PROPERTY


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        report.user_properties.extend((PROPERTY, [case, held]) for case, held in PENDING)
        PENDING.clear()
