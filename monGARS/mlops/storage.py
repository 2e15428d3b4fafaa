"""Local paths and ``gs://`` URIs behind one interface (fsspec; gcsfs for Google Cloud Storage).

``STORAGE_EMULATOR_HOST`` points gcsfs at a local GCS emulator (tests do this); otherwise gcsfs uses
the pod's Google credentials.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from monGARS.mlops.errors import MongarsError

GCS_PREFIX = "gs://"


def is_gcs(uri: str) -> bool:
    return uri.startswith(GCS_PREFIX)


def gcs_filesystem() -> Any:
    """A gcsfs filesystem; anonymous against an emulator, default credentials otherwise.

    Against an emulator we use gcsfs's plain JSON-API class: the default one first asks a gRPC
    API for the bucket type, which emulators do not serve, and waits a minute on every call.
    """
    import gcsfs

    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        from gcsfs.core import GCSFileSystem as JsonApiFileSystem

        return JsonApiFileSystem(token="anon", endpoint_url=emulator)
    return gcsfs.GCSFileSystem()


def filesystem_for(uri: str) -> tuple[Any, str]:
    """Return (fsspec filesystem, path inside it) for a local path or a ``gs://`` URI."""
    if is_gcs(uri):
        return gcs_filesystem(), uri[len(GCS_PREFIX) :]
    import fsspec

    return fsspec.filesystem("file"), str(Path(uri).expanduser())


def exists(uri: str) -> bool:
    fs, path = filesystem_for(uri)
    try:
        return bool(fs.exists(path))
    except OSError as error:
        raise MongarsError(f"{uri}: cannot be reached ({error})") from None


def download_tree(uri: str, destination: Path) -> Path:
    """Copy a ``gs://`` prefix (a folder of files) to a local folder."""
    fs, path = filesystem_for(uri)
    try:
        if not fs.exists(path):
            raise MongarsError(f"{uri}: does not exist; check the bucket and prefix")
        destination.mkdir(parents=True, exist_ok=True)
        for remote in fs.find(path):
            relative = remote[len(path.rstrip("/")) + 1 :] if fs.isdir(path) else Path(remote).name
            local = destination / relative
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get(remote, str(local))
    except MongarsError:
        raise
    except OSError as error:
        raise MongarsError(f"{uri}: cannot be read ({error})") from None
    return destination


def upload_tree(source: Path, uri: str) -> None:
    """Copy a local folder to a ``gs://`` prefix."""
    fs, path = filesystem_for(uri)
    for local in sorted(p for p in source.rglob("*") if p.is_file()):
        fs.put(str(local), f"{path.rstrip('/')}/{local.relative_to(source).as_posix()}")
