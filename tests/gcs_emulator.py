"""A local Google Cloud Storage emulator for tests of ``gs://`` paths (fixtures shared by suites).

Fixtures (register them in tests/conftest.py with ``pytest_plugins = ["gcs_emulator"]`` or import):

- ``gcs_emulator`` (session): one in-memory gcp-storage-emulator on a free loopback port, with
  ``STORAGE_EMULATOR_HOST`` pointing at it for the session; ``monGARS.mlops.storage`` then talks
  to it through gcsfs exactly as it talks to GCS in a pod.
- ``gcs_bucket`` (function): a fresh, empty bucket, as ``gs://<name>``.

The emulator ignores upload preconditions; GCS honours them (JSON API, objects.insert:
``ifGenerationMatch`` — the upload happens only if the object's live generation equals the value,
0 meaning "no live object" — else HTTP 412 Precondition Failed). ``start_emulator`` wraps the
emulator's insert handler to apply that rule to media uploads, the form the champion registry's
pointer switch uses (``monGARS/mlops/evaluate/registry.py``).

gcsfs's default "extended" filesystem (2026) first asks GCS's gRPC storage-control API for each
bucket's layout; emulators do not serve it and each lookup waits 60 s, so ``storage`` uses the
plain JSON-API class under an emulator; the fixture checks that it does.
"""

from __future__ import annotations

import atexit
import itertools
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


@dataclass
class GcsEmulator:
    """A running emulator: its endpoint, and fresh buckets on demand."""

    host: str
    server: Any
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def new_bucket(self, prefix: str = "test-bucket") -> str:
        """Create an empty bucket through the JSON API; return ``gs://<name>``."""
        from monGARS.mlops import storage

        name = f"{prefix}-{os.getpid()}-{next(self._names):04d}"
        storage.gcs_filesystem().mkdir(name)
        return f"gs://{name}"

    def stop(self) -> None:
        self.server.stop()


_lock = threading.Lock()
_running: GcsEmulator | None = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _honour_generation_preconditions() -> None:
    """Make the emulator's object insert refuse a failed ``ifGenerationMatch`` with 412."""
    from http import HTTPStatus

    from gcp_storage_emulator import server
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    original = objects.insert
    if getattr(original, "honours_preconditions", False):
        return

    def insert(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        wanted = request.query.get("ifGenerationMatch")
        name = request.query.get("name")
        if wanted and name:
            try:
                live = int(
                    storage.get_file_obj(request.params["bucket_name"], name[0])["generation"]
                )
            except NotFound:
                live = 0
            if live != int(wanted[0]):
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json({"error": {"code": 412, "message": "conditionNotMet"}})
                return None
        return original(request, response, storage, *args, **kwargs)

    insert.honours_preconditions = True  # type: ignore[attr-defined]
    objects.insert = insert
    for _, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler is original:
                handlers[method] = insert


def start_emulator() -> GcsEmulator:
    """Start the process-wide emulator once (later calls return the same one)."""
    global _running
    with _lock:
        if _running is not None:
            return _running
        from gcp_storage_emulator.server import create_server

        _honour_generation_preconditions()
        last_error: OSError | None = None
        for _ in range(5):  # another process may take the probed port first
            port = _free_port()
            server = create_server("127.0.0.1", port, in_memory=True)
            try:
                server.start()
            except OSError as error:
                last_error = error
                continue
            _running = GcsEmulator(host=f"http://127.0.0.1:{port}", server=server)
            atexit.register(_stop_emulator)
            return _running
        raise RuntimeError(f"could not start the GCS emulator on a loopback port: {last_error}")


def _check_plain_gcsfs() -> None:
    import gcsfs.core

    from monGARS.mlops import storage

    if type(storage.gcs_filesystem()) is not gcsfs.core.GCSFileSystem:
        pytest.fail(
            "gcsfs was imported with its extended filesystem (GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT), "
            "which stalls 60 s per call against an emulator; import tests/gcs_emulator.py from "
            "tests/conftest.py so it is set first, or have storage.gcs_filesystem() use "
            "gcsfs.core.GCSFileSystem when STORAGE_EMULATOR_HOST is set"
        )


def _stop_emulator() -> None:
    global _running
    with _lock:
        if _running is not None:
            _running.stop()
            _running = None


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """The emulator, with ``STORAGE_EMULATOR_HOST`` set for the whole session."""
    emulator = start_emulator()
    previous = os.environ.get(EMULATOR_ENV)
    os.environ[EMULATOR_ENV] = emulator.host
    try:
        _check_plain_gcsfs()
        yield emulator
    finally:
        _stop_emulator()  # its server thread is not a daemon: left running, it blocks exit
        if previous is None:
            os.environ.pop(EMULATOR_ENV, None)
        else:
            os.environ[EMULATOR_ENV] = previous


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator) -> str:
    """A fresh empty bucket on the emulator, as ``gs://<name>``."""
    return gcs_emulator.new_bucket()
