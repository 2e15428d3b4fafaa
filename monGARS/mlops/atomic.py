"""Atomic writes: outputs appear complete under their final name, or not at all.

A stage killed midway leaves at most a hidden ``.<name>.partial-*`` sibling, never a file or folder
that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

PARTIAL_MARKER = ".partial-"


def _partial_sibling(target: Path, is_dir: bool) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}{PARTIAL_MARKER}"
    if is_dir:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    handle, name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
    os.close(handle)
    return Path(name)


def _replace(partial: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        # Move the old folder aside first so the new one appears in one rename.
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
        os.replace(target, stale)
        os.replace(partial, target)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.replace(partial, target)
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a scratch folder that is renamed to ``target`` only if the block succeeds."""
    final = Path(target)
    partial = _partial_sibling(final, is_dir=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _replace(partial, final)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a scratch file path that replaces ``target`` only if the block succeeds."""
    final = Path(target)
    partial = _partial_sibling(final, is_dir=False)
    try:
        yield partial
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _replace(partial, final)


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically."""
    with atomic_file(target) as partial:
        partial.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: str | os.PathLike[str], payload: Any) -> Path:
    """Write JSON atomically, keys sorted so identical content gives identical bytes."""
    return write_text(
        target, json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def write_jsonl(target: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line atomically; return the number of records written."""
    count = 0
    with atomic_file(target) as partial, open(partial, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, sort_keys=True))
            handle.write("\n")
            count += 1
    return count


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large model files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def is_partial(path: str | os.PathLike[str]) -> bool:
    """True for the scratch siblings that atomic writes leave behind when killed."""
    return PARTIAL_MARKER in Path(path).name
