"""Which reliability cases held, shared by the tests and the end-of-session summary."""

from __future__ import annotations

RESULTS: dict[str, list[str]] = {"held": [], "broke": []}


def record(case: str, held: bool) -> None:
    RESULTS["held" if held else "broke"].append(case)
