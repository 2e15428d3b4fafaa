"""Counts for the reliability suite, printed at the end of the test session."""

from __future__ import annotations

from typing import Any

from tests.reliability.tally import RESULTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    tried = len(RESULTS["held"]) + len(RESULTS["broke"])
    if tried:
        broke = f"; broke: {', '.join(RESULTS['broke'])}" if RESULTS["broke"] else ""
        terminalreporter.write_line(
            f"reliability: {tried} cases tried, {len(RESULTS['held'])} held{broke}"
        )
