"""Source readers: JSONL/Parquet/CSV files and folders, damaged input, caps, unreachable sources."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from monGARS.mlops.datasets.config import parse_source
from monGARS.mlops.datasets.readers import iter_rows
from monGARS.mlops.datasets.stats import SourceStats


def read(source: dict[str, Any]) -> tuple[list[dict[str, Any]], SourceStats]:
    spec, problems = parse_source(0, {"kind": "instruction", **source})
    assert spec is not None, problems
    stats = SourceStats(spec.name, spec.uri, spec.kind, spec.adapter)
    return list(iter_rows(spec, stats)), stats


def test_jsonl_damage_is_counted_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(
        b'{"n": 1}\n'
        b"\n"  # blank lines are not rows
        b'{"n": 2, "text": "caf\xe9"}\n'  # latin-1 byte: invalid UTF-8
        b'{"n": 3\n'  # truncated object
        b"[1, 2]\n"  # valid JSON, not an object
        b'{"n": 4, "text": "d\xc3\xa9j\xc3\xa0"}'  # last line without newline
    )
    rows, stats = read({"uri": str(path)})
    assert rows == [{"n": 1}, {"n": 4, "text": "déjà"}]
    assert stats.read == 5
    assert dict(stats.dropped) == {"invalid_utf8": 1, "malformed_json": 1, "not_an_object": 1}
    assert stats.error is None


def test_folder_reads_every_format_in_sorted_order_and_skips_hidden_files(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.jsonl").write_text('{"n": "b"}\n', encoding="utf-8")
    with gzip.open(folder / "a.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write('{"n": "a1"}\n{"n": "a2"}\n')
    pq.write_table(pa.table({"n": ["p1", "p2", "p3"]}), folder / "sub" / "c.parquet")
    (folder / "d.csv").write_text("n,m\nc1,x\nc2,y\n", encoding="utf-8")
    (folder / ".hidden.jsonl").write_text('{"n": "hidden"}\n', encoding="utf-8")
    (folder / "_SUCCESS").write_text("", encoding="utf-8")
    (folder / "notes.txt").write_text("ignored", encoding="utf-8")
    rows, stats = read({"uri": str(folder)})
    assert [row["n"] for row in rows] == ["a1", "a2", "b", "c1", "c2", "p1", "p2", "p3"]
    assert stats.read == 8 and not stats.dropped


def test_parquet_streams_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"i": list(range(5000))}), path, row_group_size=700)
    rows, stats = read({"uri": str(path), "max_rows": 2500})
    assert [row["i"] for row in rows] == list(range(2500))
    assert stats.capped and stats.read == 2500


def test_csv_with_invalid_utf8_and_ragged_rows(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(b'q,r\nbonjour,salut\ncaf\xe9,x\nseul\n"ok","fin"\n')
    rows, stats = read({"uri": str(path)})
    assert rows == [{"q": "bonjour", "r": "salut"}, {"q": "ok", "r": "fin"}]
    assert dict(stats.dropped) == {"invalid_utf8": 1, "malformed_csv": 1}


def test_corrupt_parquet_is_counted_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file")
    rows, stats = read({"uri": str(path)})
    assert rows == []
    assert stats.dropped["unreadable_file"] == 1
    assert "broken.parquet" in (stats.error or "")


def test_truncated_gzip_keeps_the_rows_read_before_the_damage(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl.gz"
    payload = gzip.compress("".join(json.dumps({"n": i}) + "\n" for i in range(2000)).encode())
    path.write_bytes(payload[: len(payload) // 2])
    rows, stats = read({"uri": str(path)})
    assert 0 < len(rows) < 2000
    assert [row["n"] for row in rows] == list(range(len(rows)))
    assert stats.dropped["unreadable_file"] == 1


def test_missing_path_and_empty_folder_are_reported_not_raised(tmp_path: Path) -> None:
    rows, stats = read({"uri": str(tmp_path / "nowhere" / "x.jsonl")})
    assert rows == [] and "not found" in (stats.error or "")
    (tmp_path / "empty").mkdir()
    rows, stats = read({"uri": str(tmp_path / "empty")})
    assert rows == [] and "holds no .jsonl" in (stats.error or "")


def test_hub_dataset_offline_gives_a_clear_error_and_no_rows() -> None:
    # Tests run with HF_DATASETS_OFFLINE=1: the real loading code runs and fails cleanly.
    rows, stats = read({"uri": "bigscience/xP3", "adapter": "xp3", "config": "fr"})
    assert rows == []
    assert stats.error is not None
    assert stats.error.startswith("hub dataset 'bigscience/xP3' cannot be loaded")
    rows, stats = read({"uri": "hf://miracl/miracl", "kind": "retrieval", "adapter": "miracl"})
    assert rows == [] and "'miracl/miracl' cannot be loaded" in (stats.error or "")


def test_package_uri_reads_the_shipped_sample() -> None:
    rows, stats = read({"uri": "mongars://sample_fr/instruction.jsonl"})
    assert len(rows) == stats.read >= 40
    assert rows[0]["id"] == "sample-ins-000"


def test_explicit_format_reads_files_without_a_known_extension(tmp_path: Path) -> None:
    path = tmp_path / "export.data"
    path.write_text('{"n": 1}\n{"n": 2}\n', encoding="utf-8")
    rows, _ = read({"uri": str(path), "format": "jsonl"})
    assert rows == [{"n": 1}, {"n": 2}]
    rows, stats = read({"uri": str(path)})
    assert rows == [] and "unknown file type" in (stats.error or "")
