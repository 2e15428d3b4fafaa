"""The champion registry: atomic promotion, conflicts, rollback, and a kill mid-promotion."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.evaluate.registry import ChampionRegistry, PointerConflict


def files_of(folder: Path, tag: str, size: int = 4096) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in ("m-chat-Q8_0.gguf", "m-encoder-F16.gguf", "Modelfile", "bundle.json"):
        path = folder / name
        path.write_bytes((f"{tag}:{name}:".encode() * size)[:size])
        files[name] = path
    return files


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def champion_bytes(registry: ChampionRegistry, module: str) -> dict[str, bytes]:
    pointer = registry.pointer(module)
    assert pointer is not None
    manifest = registry.manifest(module, pointer.version)
    out = {}
    for name, entry in manifest["files"].items():
        data = registry.fs.cat_file(registry._path(module, "versions", pointer.version, name))
        assert digest(data) == entry["sha256"], f"{name} differs from its manifest"
        out[name] = data
    return out


@pytest.fixture(params=["local", "gcs"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> ChampionRegistry:
    if request.param == "local":
        return ChampionRegistry(str(tmp_path / "champions"))
    bucket = request.getfixturevalue("gcs_bucket")
    return ChampionRegistry(f"{bucket}/champions")


def test_promote_list_show_and_rollback(registry: ChampionRegistry, tmp_path: Path) -> None:
    assert registry.modules() == [] and registry.pointer("m") is None
    first = registry.promote("m", files_of(tmp_path / "a", "one"), {"lineage": {"run_id": "r1"}},
                             expected=None, run_id="r1")  # fmt: skip
    assert registry.modules() == ["m"]
    one = champion_bytes(registry, "m")
    assert one["Modelfile"].startswith(b"one:")
    second = registry.promote(
        "m", files_of(tmp_path / "b", "two"), {}, expected=registry.pointer("m"), run_id="r2"
    )
    assert registry.pointer("m").version == second["version"]
    assert second["history"] == [first["version"]]
    assert champion_bytes(registry, "m")["Modelfile"].startswith(b"two:")
    rolled = registry.rollback("m")
    assert rolled["version"] == first["version"] and rolled["reason"] == "rollback"
    assert champion_bytes(registry, "m") == one
    with pytest.raises(MongarsError, match="no earlier champion"):
        registry.rollback("m")
    assert registry.rollback("m", second["version"])["version"] == second["version"]
    assert [v["complete"] for v in registry.versions("m")] == [True, True]


def test_a_stale_pointer_loses(registry: ChampionRegistry, tmp_path: Path) -> None:
    registry.promote("m", files_of(tmp_path / "a", "one"), {}, expected=None, run_id="r1")
    stale = registry.pointer("m")
    registry.promote("m", files_of(tmp_path / "b", "two"), {}, expected=stale, run_id="r2")
    before = champion_bytes(registry, "m")
    with pytest.raises(PointerConflict, match="changed during promotion"):
        registry.promote("m", files_of(tmp_path / "c", "three"), {}, expected=stale, run_id="r3")
    with pytest.raises(PointerConflict):  # a first promotion racing an existing champion
        registry.promote("m", files_of(tmp_path / "d", "four"), {}, expected=None, run_id="r4")
    assert champion_bytes(registry, "m") == before


def test_an_incomplete_version_is_never_the_champion(
    registry: ChampionRegistry, tmp_path: Path
) -> None:
    registry.promote("m", files_of(tmp_path / "a", "one"), {}, expected=None, run_id="r1")
    half = registry._path("m", "versions", "half", "Modelfile")
    registry.fs.makedirs(half.rsplit("/", 1)[0], exist_ok=True)  # no-op on GCS
    registry.fs.pipe_file(half, b"partial")
    with pytest.raises(MongarsError, match="incomplete"):
        registry.switch("m", "half", registry.pointer("m"), reason="test", run_id="x")
    assert {v["version"]: v["complete"] for v in registry.versions("m")}["half"] is False


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from monGARS.mlops.evaluate import registry as reg

    root, source, when = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    registry = reg.ChampionRegistry(root)
    files = {p.name: p for p in sorted(source.iterdir())}
    if when == "upload":  # die after the first file of the new version is written
        put = registry.fs.put
        def dying_put(*args, **kwargs):
            put(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        registry.fs.put = dying_put
    else:  # die after the whole version is written, right before the pointer switch
        def dying_switch(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        registry.switch = dying_switch
    registry.promote("m", files, {}, expected=registry.pointer("m"), run_id="killed")
    """
)


@pytest.mark.parametrize("when", ["upload", "switch"])
def test_a_kill_during_promotion_leaves_the_champion_whole(
    registry: ChampionRegistry, tmp_path: Path, when: str
) -> None:
    registry.promote("m", files_of(tmp_path / "a", "one"), {}, expected=None, run_id="r1")
    before = champion_bytes(registry, "m")
    version = registry.pointer("m").version
    files_of(tmp_path / "big", "two", size=1 << 20)
    result = subprocess.run(
        [sys.executable, "-c", KILLER, registry.uri, str(tmp_path / "big"), when],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert registry.pointer("m").version == version
    assert champion_bytes(registry, "m") == before
    leftovers = [v for v in registry.versions("m") if v["version"] != version]
    assert len(leftovers) == 1
    assert leftovers[0]["complete"] is (when == "switch")  # written, never pointed at


def test_bad_uri_is_refused() -> None:
    with pytest.raises(MongarsError, match="URI is empty"):
        ChampionRegistry("  ")


def test_champion_cli_reads_and_restores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from monGARS.cli import main

    root = tmp_path / "runs" / "champions"
    registry = ChampionRegistry(str(root))
    first = registry.promote("m", files_of(tmp_path / "a", "one"), {"summary": {"token_f1": 0.5}},
                             expected=None, run_id="r1")  # fmt: skip
    registry.promote("m", files_of(tmp_path / "b", "two"), {}, expected=registry.pointer("m"),
                     run_id="r2")  # fmt: skip
    assert main(["champion", "list", "--runs-root", str(tmp_path / "runs")]) == 0
    listing = capsys.readouterr().out
    assert "m " in listing and "1 earlier champion(s)" in listing
    assert main(["champion", "show", "m", "--registry", str(root)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown["manifest"]["files"]) == {
        "m-chat-Q8_0.gguf", "m-encoder-F16.gguf", "Modelfile", "bundle.json"
    }  # fmt: skip
    assert (
        main(["champion", "rollback", "m", "--to", first["version"], "--registry", str(root)]) == 0
    )
    assert f"champion is now {first['version']}" in capsys.readouterr().out
    assert main(["champion", "show", "other", "--registry", str(root)]) == 2
    assert "other has no champion; modules with one: m" in capsys.readouterr().err
    assert main(["champion", "list", "--registry", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
