"""A warm test runner for mutation testing: heavy libraries imported once, one fork per mutant.

A target of tests/mutation.toml that lists ``preload`` modules (torch, transformers, ...) runs its
mutants through this instead of a fresh ``python -m pytest`` each: tests/mutation.py starts
``serve`` in the scratch checkout, which imports those modules and then forks a child per
request; the child runs pytest on the mutated tree and reports its exit code. Nothing of the
project is imported before the fork (``serve`` refuses to start otherwise), so each child reads
the mutated module from disk exactly as a fresh interpreter would, and no state passes from one
mutant to the next. cosmic-ray's test command is ``run``, a small client.

    python tests/mutation_warm.py serve SOCKET MODULE [MODULE ...]
    python tests/mutation_warm.py run SOCKET TIMEOUT PYTEST_ARG [PYTEST_ARG ...]
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys

PROJECT_PACKAGES = ("monGARS", "components", "pipelines", "tests")


def serve(path: str, modules: list[str]) -> None:
    for name in modules:
        importlib.import_module(name)
    import pytest  # noqa: F401  (its own import cost, paid once)

    leaked = sorted(m for m in sys.modules if m.split(".")[0] in PROJECT_PACKAGES)
    if leaked:
        raise SystemExit(f"preloading imported project modules {leaked[:5]}: the mutants would not")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    print("ready", flush=True)
    while True:
        connection, _ = server.accept()
        request = json.loads(connection.makefile("r", encoding="utf-8").readline())
        if os.fork() == 0:
            server.close()
            _child(connection, request["args"], float(request["timeout"]))
        connection.close()


def _child(connection: socket.socket, args: list[str], timeout: float) -> None:
    """Run pytest in this fork and send its exit code; never returns."""
    code = 3
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.alarm(max(1, int(timeout)))  # a mutant that loops forever dies here
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        import pytest

        code = int(pytest.main(args))
    finally:
        try:
            connection.sendall(f"{code}\n".encode())
        finally:
            os._exit(0)  # no atexit handlers or finalisers inherited from the server


def run(path: str, timeout: float, args: list[str]) -> int:
    """The test command: pytest's exit code from a warm fork (1 when the fork died)."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(path)
    client.sendall((json.dumps({"args": args, "timeout": timeout}) + "\n").encode())
    answer = client.makefile("r", encoding="utf-8").readline().strip()
    return int(answer) if answer else 1


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"] and len(argv) >= 2:
        serve(argv[1], argv[2:])
        return 0
    if argv[:1] == ["run"] and len(argv) >= 4:
        return run(argv[1], float(argv[2]), argv[3:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
