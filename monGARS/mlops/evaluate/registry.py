"""The champion registry: per module, the promoted model that runs publish to and users serve.

It lives at a URI that outlives runs — ``gs://bucket/prefix`` (gcsfs), a folder on the shared
volume, or a local folder for kfp.local — with this layout:

    <root>/<module>/champion.json                 the pointer: which version is the champion
    <root>/<module>/versions/<version>/           the promoted files: chat and encoder GGUFs,
        Modelfile, bundle.json, verification.json, evaluation.json, lineage.json
    <root>/<module>/versions/<version>/manifest.json   written last: every file's size and sha256

Promotion is two steps, so a reader never sees half a champion: the version folder is written in
full (its manifest last), then the pointer is switched in one write. Locally the pointer is
replaced with ``os.replace`` under a lock; on GCS the new pointer is uploaded with an
``ifGenerationMatch`` precondition on the generation that was read (0 when there was none), so two
promotions racing cannot both win: the loser gets HTTP 412 and fails in one line. A promotion
killed before the switch leaves an unreferenced version folder (``list`` shows it as incomplete
or unused) and the previous champion untouched.

The pointer keeps the champions that came before (``history``), so ``rollback`` switches back to
the previous one (or any listed version) the same atomic way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import atomic_file, sha256_file
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.storage import filesystem_for, is_gcs

POINTER = "champion.json"
MANIFEST = "manifest.json"
VERSIONS = "versions"
HISTORY_KEPT = 20


class PointerConflict(MongarsError):
    """Another promotion switched the pointer between our read and our write."""


@dataclass(frozen=True)
class Pointer:
    data: dict[str, Any]
    generation: int  # GCS object generation; 0 when there is no pointer yet (locally: 0 or 1)

    @property
    def version(self) -> str:
        return str(self.data["version"])


def new_version_id(run_id: str) -> str:
    """A sortable, unique version name: UTC time, then the run id's safe characters."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    tail = re.sub(r"[^A-Za-z0-9_.-]+", "-", run_id).strip("-.")[:40] or "run"
    return f"{stamp}-{tail}-{secrets.token_hex(2)}"


class ChampionRegistry:
    """Read and promote champions under one root URI (see module doc)."""

    def __init__(self, uri: str) -> None:
        if not uri.strip():
            raise MongarsError("champion registry: the URI is empty; give gs://..., or a folder")
        self.uri = uri.rstrip("/")
        self.fs, self.root = filesystem_for(self.uri)
        self.gcs = is_gcs(self.uri)

    # --- paths -----------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def uri_of(self, *parts: str) -> str:
        return "/".join([self.uri, *parts])

    # --- reading ---------------------------------------------------------------------------
    def modules(self) -> list[str]:
        """Modules that have a champion."""
        try:
            entries = self.fs.ls(self.root, detail=False) if self.fs.exists(self.root) else []
        except OSError as error:
            raise MongarsError(f"champion registry {self.uri}: cannot be read ({error})") from None
        names = sorted(Path(e.rstrip("/")).name for e in entries)
        return [n for n in names if self.fs.exists(self._path(n, POINTER))]

    def pointer(self, module: str) -> Pointer | None:
        path = self._path(module, POINTER)
        try:
            if not self.fs.exists(path):
                return None
            if self.gcs:
                self.fs.invalidate_cache(path)
                info = self.fs.info(path)
                data = json.loads(self.fs.cat_file(path, generation=info.get("generation")))
                return Pointer(data, int(info.get("generation") or 0))
            return Pointer(json.loads(Path(path).read_text(encoding="utf-8")), 1)
        except (OSError, ValueError) as error:
            raise MongarsError(
                f"champion registry {self.uri}: {module}/{POINTER} ({error})"
            ) from None

    def versions(self, module: str) -> list[dict[str, Any]]:
        """Every version folder of ``module``: its name and whether its manifest is there."""
        folder = self._path(module, VERSIONS)
        if not self.fs.exists(folder):
            return []
        names = sorted(Path(e.rstrip("/")).name for e in self.fs.ls(folder, detail=False))
        return [
            {
                "version": name,
                "complete": self.fs.exists(self._path(module, VERSIONS, name, MANIFEST)),
            }
            for name in names
        ]

    def manifest(self, module: str, version: str) -> dict[str, Any]:
        path = self._path(module, VERSIONS, version, MANIFEST)
        try:
            return json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            raise MongarsError(
                f"champion registry {self.uri}: version {module}/{version} is incomplete or "
                "missing (no manifest.json)"
            ) from None

    def read_version_json(self, module: str, version: str, name: str) -> dict[str, Any]:
        """A JSON file of a version (bundle.json, evaluation.json, lineage.json)."""
        return json.loads(self.fs.cat_file(self._path(module, VERSIONS, version, name)))

    def champion(self, module: str) -> tuple[Pointer, dict[str, Any]] | None:
        """The current champion's pointer and manifest, or None."""
        pointer = self.pointer(module)
        if pointer is None:
            return None
        return pointer, self.manifest(module, pointer.version)

    def download(self, module: str, version: str, destination: Path, names: list[str]) -> Path:
        """Copy some of a version's files to a local folder, checking each one's sha256."""
        manifest = self.manifest(module, version)
        destination.mkdir(parents=True, exist_ok=True)
        for name in names:
            entry = manifest["files"].get(name)
            if entry is None:
                raise MongarsError(f"champion {module}/{version} has no file {name}")
            local = destination / name
            self.fs.get(self._path(module, VERSIONS, version, name), str(local))
            if sha256_file(local) != entry["sha256"]:
                raise MongarsError(
                    f"champion {module}/{version}: {name} does not match its sha256; the "
                    "registry copy is damaged"
                )
        return destination

    # --- writing ---------------------------------------------------------------------------
    def write_version(
        self, module: str, version: str, files: Mapping[str, Path], record: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Upload ``files`` (registry name -> local path), then the manifest that completes it."""
        entries = {}
        if not self.gcs:  # object stores have no folders; a local one must exist first
            self.fs.makedirs(self._path(module, VERSIONS, version), exist_ok=True)
        for name, local in sorted(files.items()):
            self.fs.put(str(local), self._path(module, VERSIONS, version, name))
            entries[name] = {"bytes": Path(local).stat().st_size, "sha256": sha256_file(local)}
        manifest = {"module": module, "version": version, "files": entries, **record}
        self._write_bytes(
            self._path(module, VERSIONS, version, MANIFEST),
            json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"),
        )
        return manifest

    def switch(
        self,
        module: str,
        version: str,
        expected: Pointer | None,
        *,
        reason: str,
        run_id: str,
        history: list[str] | None = None,
    ) -> dict[str, Any]:
        """Point ``module`` at ``version`` if the pointer is still ``expected`` (else conflict).

        ``history`` (the earlier champions, newest first) defaults to the expected pointer's
        version followed by its own history.
        """
        self.manifest(module, version)  # refuse to point at an incomplete version
        if history is None:
            history = []
            if expected is not None:
                history = [expected.version, *expected.data.get("history", [])]
        data = {
            "module": module,
            "version": version,
            "history": [v for v in history if v != version][:HISTORY_KEPT],
            "switched_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "reason": reason,
            "run_id": run_id,
        }
        payload = json.dumps(data, indent=2, sort_keys=True).encode("utf-8")
        path = self._path(module, POINTER)
        if self.gcs:
            self._gcs_write_if(path, payload, expected.generation if expected else 0)
        else:
            with self._local_lock(module):
                current = self.pointer(module)
                if (current.version if current else None) != (
                    expected.version if expected else None
                ):
                    raise PointerConflict(
                        f"champion registry {self.uri}: {module} changed during promotion "
                        f"(now {current.version if current else 'none'}); run the promotion again"
                    )
                with atomic_file(path) as partial:
                    partial.write_bytes(payload)
        return data

    def _write_bytes(self, path: str, payload: bytes) -> None:
        if self.gcs:
            self.fs.pipe_file(path, payload)
            return
        with atomic_file(path) as partial:
            partial.write_bytes(payload)

    def _gcs_write_if(self, path: str, payload: bytes, generation: int) -> None:
        """Upload with ``ifGenerationMatch`` (GCS JSON API, objects.insert; 412 when it moved)."""
        bucket, key, _ = self.fs.split_path(path)
        try:
            self.fs.call(
                "POST",
                f"{self.fs._location}/upload/storage/v1/b/{bucket}/o",
                uploadType="media",
                name=key,
                ifGenerationMatch=str(generation),
                headers={"Content-Type": "application/octet-stream"},
                data=payload,
                json_out=True,
            )
        except FileExistsError:  # gcsfs maps HTTP 412 Precondition Failed to FileExistsError
            raise PointerConflict(
                f"champion registry {self.uri}: {path.rsplit('/', 2)[-2]} changed during "
                "promotion (generation precondition failed); run the promotion again"
            ) from None
        self.fs.invalidate_cache(path)

    @contextlib.contextmanager
    def _local_lock(self, module: str) -> Iterator[None]:
        folder = Path(self._path(module))
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- operations ------------------------------------------------------------------------
    def promote(
        self,
        module: str,
        files: Mapping[str, Path],
        record: Mapping[str, Any],
        *,
        expected: Pointer | None,
        run_id: str,
    ) -> dict[str, Any]:
        """Write a new version, then switch the pointer to it (see module doc)."""
        version = new_version_id(run_id)
        self.write_version(module, version, files, record)
        return self.switch(module, version, expected, reason="promoted", run_id=run_id)

    def rollback(
        self, module: str, to_version: str | None = None, *, run_id: str = "rollback"
    ) -> dict[str, Any]:
        """Make the previous champion (or ``to_version``) the champion again.

        The champions between the target and now leave the history, so a second rollback goes
        further back rather than undoing the first.
        """
        current = self.pointer(module)
        if current is None:
            raise MongarsError(f"champion registry {self.uri}: {module} has no champion")
        target = to_version or next(iter(current.data.get("history") or []), None)
        if target is None:
            raise MongarsError(
                f"champion registry {self.uri}: {module} has no earlier champion to roll back to"
            )
        if target == current.version:
            raise MongarsError(f"champion registry {self.uri}: {target} is already the champion")
        earlier = list(current.data.get("history") or [])
        remaining = (
            earlier[earlier.index(target) + 1 :]
            if target in earlier
            else [
                current.version,
                *earlier,
            ]
        )
        return self.switch(
            module, target, current, reason="rollback", run_id=run_id, history=remaining
        )
