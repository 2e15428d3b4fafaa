"""How a dead cleaning worker's exit is named in the build's error (parallel._exit_status)."""

from __future__ import annotations

import signal

from monGARS.mlops.datasets.parallel import _exit_status


def test_exit_codes_and_signals_are_named_and_unnamed_signals_still_read() -> None:
    assert _exit_status(3) == "exit code 3"
    assert _exit_status(-signal.SIGTERM) == "signal SIGTERM"
    # A real-time signal has no name in the enum: the number, never a ValueError.
    assert _exit_status(-(signal.SIGRTMIN + 3)) == f"signal {signal.SIGRTMIN + 3}"
