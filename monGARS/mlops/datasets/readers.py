"""Stream raw rows from a source: local files or folders, ``gs://`` URIs, or hub dataset ids.

Everything is a generator, so a source of millions of rows flows through in bounded memory. Bad
rows (malformed JSON, invalid UTF-8, non-object lines) are counted on the source's stats and
skipped; a source that cannot be opened at all records its error and yields nothing. Nothing here
raises for bad data: the build decides, once every source is read, whether anything usable is left.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from monGARS.mlops import storage
from monGARS.mlops.datasets.config import HUB_SCHEME, PACKAGE_SCHEME, SourceSpec
from monGARS.mlops.datasets.stats import SourceStats

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?$")
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".jsonl.gz": "jsonl",
    ".json.gz": "jsonl",
    ".parquet": "parquet",
    ".csv": "csv",
}
_SURROGATE = re.compile("[\udc80-\udcff]")


class SourceUnavailable(Exception):
    """The source cannot be opened or listed; the message is shown in the summary."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def package_path(uri: str) -> Path:
    """The file behind a ``mongars://`` URI (data shipped inside the monGARS.mlops package)."""
    relative = uri[len(PACKAGE_SCHEME) :]
    return Path(str(resources.files("monGARS.mlops") / "data" / relative))


def _format_of(path: str, forced: str | None) -> str | None:
    if forced:
        return forced
    lowered = path.lower()
    for suffix, fmt in sorted(_EXTENSIONS.items(), key=lambda item: -len(item[0])):
        if lowered.endswith(suffix):
            return fmt
    return None


def _list_files(fs: Any, path: str, forced: str | None) -> list[str]:
    """The data files of a path: itself, or every supported file under a folder, sorted."""
    if not fs.exists(path):
        raise SourceUnavailable("does not exist; check the path or bucket")
    if not fs.isdir(path):
        return [path]
    found = []
    for candidate in sorted(fs.find(path)):
        relative = candidate[len(path.rstrip("/")) + 1 :]
        if any(part.startswith((".", "_")) for part in relative.split("/")):
            continue  # hidden files, _SUCCESS markers, partial writes
        if _format_of(candidate, forced):
            found.append(candidate)
    if not found:
        raise SourceUnavailable("folder holds no .jsonl, .json, .parquet or .csv files")
    return found


def _jsonl_rows(handle: Any, gz: bool, stats: SourceStats) -> Iterator[dict[str, Any]]:
    stream = gzip.GzipFile(fileobj=handle) if gz else handle
    for raw in stream:
        if not raw.strip():
            continue
        stats.read += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            stats.drop("invalid_utf8")
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            stats.drop("malformed_json")
            continue
        if not isinstance(row, dict):
            stats.drop("not_an_object")
            continue
        yield row


def _csv_rows(handle: Any, stats: SourceStats) -> Iterator[dict[str, Any]]:
    text = io.TextIOWrapper(handle, encoding="utf-8", errors="surrogateescape", newline="")
    for row in csv.DictReader(text):
        stats.read += 1
        values = [value for value in row.values() if isinstance(value, str)]
        if any(_SURROGATE.search(value) for value in values):
            stats.drop("invalid_utf8")
            continue
        if None in row or any(value is None for value in row.values()):
            stats.drop("malformed_csv")  # more or fewer cells than the header
            continue
        yield dict(row)


def _parquet_rows(handle: Any, stats: SourceStats) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(handle).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            stats.read += 1
            yield row


def _file_rows(fs: Any, path: str, fmt: str, stats: SourceStats) -> Iterator[dict[str, Any]]:
    with fs.open(path, "rb") as handle:
        if fmt == "jsonl":
            yield from _jsonl_rows(handle, path.lower().endswith(".gz"), stats)
        elif fmt == "csv":
            yield from _csv_rows(handle, stats)
        else:
            yield from _parquet_rows(handle, stats)


def _files_rows(
    fs: Any, path: str, spec: SourceSpec, stats: SourceStats
) -> Iterator[dict[str, Any]]:
    try:
        files = _list_files(fs, path, spec.format)
    except SourceUnavailable:
        raise
    except (OSError, ValueError) as error:
        raise SourceUnavailable(f"cannot be listed ({_first_line(error)})") from None
    for file in files:
        fmt = _format_of(file, spec.format)
        if fmt is None:
            raise SourceUnavailable(
                f"{file}: unknown file type; "
                "name it .jsonl/.parquet/.csv or set the source's format"
            )
        try:
            yield from _file_rows(fs, file, fmt, stats)
        except (OSError, ValueError, EOFError, csv.Error) as error:
            # A truncated gzip, a corrupt parquet footer, a CSV with a broken quote: the rows
            # read so far stay, the rest of this file is counted as unreadable.
            stats.drop("unreadable_file")
            stats.error = f"{file}: {_first_line(error)}"
        except Exception as error:  # pyarrow raises its own ArrowException family
            if type(error).__module__.startswith("pyarrow"):
                stats.drop("unreadable_file")
                stats.error = f"{file}: {_first_line(error)}"
            else:
                raise


def _hub_rows(spec: SourceSpec, dataset_id: str, stats: SourceStats) -> Iterator[dict[str, Any]]:
    """Stream a hub dataset; the token comes from HF_TOKEN and goes nowhere else."""
    try:
        import datasets

        stream = datasets.load_dataset(
            dataset_id,
            name=spec.config,
            split=spec.split,
            data_dir=spec.subset,
            streaming=True,
            token=os.environ.get("HF_TOKEN"),
        )
        iterator = iter(stream)
    except Exception as error:  # offline, unknown id, gated repo, bad config name, ...
        raise SourceUnavailable(
            f"hub dataset {dataset_id!r} cannot be loaded ({_first_line(error)})"
        ) from None
    while True:
        try:
            row = next(iterator)
        except StopIteration:
            return
        except Exception as error:  # a network drop mid-stream keeps what was read
            raise SourceUnavailable(
                f"hub stream broke after {stats.read} rows ({_first_line(error)})"
            ) from None
        stats.read += 1
        if isinstance(row, dict):
            yield row
        else:
            stats.drop("not_an_object")


def iter_rows(spec: SourceSpec, stats: SourceStats) -> Iterator[dict[str, Any]]:
    """Raw rows of one source, capped at ``spec.max_rows``; an unreachable source yields nothing.

    The failure is recorded on ``stats.error`` instead of raised; rows read before it are kept.
    """
    uri = spec.uri
    try:
        if uri.startswith(PACKAGE_SCHEME):
            path = package_path(uri)
            rows = _files_rows(storage.filesystem_for(str(path))[0], str(path), spec, stats)
        elif storage.is_gcs(uri):
            fs, path = storage.filesystem_for(uri)
            rows = _files_rows(fs, path, spec, stats)
        elif uri.startswith(HUB_SCHEME):
            rows = _hub_rows(spec, uri[len(HUB_SCHEME) :], stats)
        elif Path(uri).expanduser().exists():
            fs, path = storage.filesystem_for(uri)
            rows = _files_rows(fs, path, spec, stats)
        elif _HUB_ID.fullmatch(uri) and not uri.startswith((".", "~")):
            rows = _hub_rows(spec, uri, stats)
        else:
            raise SourceUnavailable("not found: not a local path, gs:// URI or hub dataset id")
        for row in rows:
            yield row
            if spec.max_rows and stats.read >= spec.max_rows:
                stats.capped = True
                return
    except SourceUnavailable as error:
        stats.error = str(error)
    except Exception as error:  # credentials, DNS, permission, HTTP: reported, the build goes on
        stats.error = f"cannot be read ({_first_line(error)})"
