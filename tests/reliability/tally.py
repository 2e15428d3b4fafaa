"""Which reliability cases held, shared by the tests and the end-of-session summary.

A test calls ``record``; the case travels on its test report (``user_properties``), because under
`make test` the test runs in a pytest-xdist worker while the summary is printed by the process
that started them (tests/conftest.py counts the reports, tests/reliability/conftest.py attaches).
"""

from __future__ import annotations

PROPERTY = "reliability-case"
PENDING: list[tuple[str, bool]] = []  # recorded by the running test, not yet on its report
RESULTS: dict[str, list[str]] = {"held": [], "broke": []}


def record(case: str, held: bool) -> None:
    PENDING.append((case, held))


def count(user_properties: list[tuple[str, object]]) -> None:
    """Add the cases a test report carries to RESULTS."""
    for name, value in user_properties:
        if name == PROPERTY:
            case, held = value
            RESULTS["held" if held else "broke"].append(str(case))


def summary_line() -> str | None:
    tried = len(RESULTS["held"]) + len(RESULTS["broke"])
    if not tried:
        return None
    broke = f"; broke: {', '.join(RESULTS['broke'])}" if RESULTS["broke"] else ""
    return f"reliability: {tried} cases tried, {len(RESULTS['held'])} held{broke}"
