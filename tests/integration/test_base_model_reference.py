"""The base model travels by reference via the shared cache volume; checkpoints default there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monGARS.mlops import stages
from monGARS.mlops.base_model import fetch_base_model
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.shared_cache import (
    CACHE_DIR_ENV,
    REFERENCE_FILE,
    default_checkpoint_root,
    resolve_model_dir,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "volume"
    folder.mkdir()
    monkeypatch.setenv(CACHE_DIR_ENV, str(folder))
    return folder


def test_fetch_writes_the_weights_once_and_the_artifact_holds_a_reference(
    volume: Path, tmp_path: Path
) -> None:
    first = fetch_base_model("tiny", tmp_path / "artifact-1")
    artifact = tmp_path / "artifact-1"
    assert sorted(p.name for p in artifact.iterdir()) == [REFERENCE_FILE]
    assert (artifact / REFERENCE_FILE).stat().st_size < 4096
    assert first["storage"] == "model-cache" and first["model_cache_reused"] == 0
    (entry,) = (volume / "models").iterdir()
    assert entry.name == first["model_cache_key"] and entry.name.startswith("tiny-")
    files = [p for p in entry.rglob("*") if p.is_file() and p.name != ".complete"]
    assert any(p.suffix == ".safetensors" for p in files)
    assert first["model_bytes"] == sum(p.stat().st_size for p in files)

    resolved = resolve_model_dir(artifact)
    assert resolved == entry and (resolved / "config.json").is_file()

    # A second fetch (another run, or caching off) reuses the entry: nothing is rebuilt.
    before = {p.name: p.stat().st_mtime_ns for p in entry.iterdir()}
    second = fetch_base_model("tiny", tmp_path / "artifact-2")
    assert second["model_cache_reused"] == 1
    assert {p.name: p.stat().st_mtime_ns for p in entry.iterdir()} == before


def test_a_damaged_or_absent_cache_entry_is_refused_in_one_line(
    volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetch_base_model("tiny", tmp_path / "artifact")
    (entry,) = (volume / "models").iterdir()
    weights = next(entry.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(MongarsError, match="differs from what fetch_base_model recorded") as error:
        resolve_model_dir(tmp_path / "artifact")
    assert "\n" not in str(error.value)

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "not-mounted"))
    with pytest.raises(MongarsError, match="mount model_cache_pvc"):
        resolve_model_dir(tmp_path / "artifact")


def test_without_a_volume_the_artifact_holds_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "absent"))
    metadata = fetch_base_model("tiny", tmp_path / "artifact")
    assert metadata["storage"] == "artifact"
    assert (tmp_path / "artifact" / "config.json").is_file()
    assert resolve_model_dir(tmp_path / "artifact") == tmp_path / "artifact"
    assert default_checkpoint_root() == ""


def test_checkpoints_default_to_the_volume(volume: Path) -> None:
    assert default_checkpoint_root() == str(volume / "checkpoints")
    resolved = stages._with_checkpoint_default({"checkpoint_root": "", "lora_r": 4})
    assert resolved == {"checkpoint_root": str(volume / "checkpoints"), "lora_r": 4}
    explicit = stages._with_checkpoint_default({"checkpoint_root": "gs://bucket/ckpt"})
    assert explicit["checkpoint_root"] == "gs://bucket/ckpt"


def _adapter_folder(root: Path, weights: bytes) -> Path:
    (root / "adapter").mkdir(parents=True)
    (root / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 4}))
    (root / "adapter" / "adapter_model.safetensors").write_bytes(weights)
    (root / "metrics.json").write_text(json.dumps({"module": "platform"}))
    return root


def test_raft_hands_its_adapter_to_merge_through_the_volume(volume: Path, tmp_path: Path) -> None:
    """raft (under the condition) publishes its folder; merge (outside) reads it by reference."""
    from monGARS.mlops.handoff import publish_to_cache, resolve_from_cache

    reference = publish_to_cache(_adapter_folder(tmp_path / "raft", b"raft"), "raft-platform")
    assert len(reference) < 1024  # a parameter, not a payload
    folder = resolve_from_cache(reference, "raft adapter")
    assert folder.parent == volume / "handoff"
    assert (folder / "adapter" / "adapter_model.safetensors").read_bytes() == b"raft"
    # Same content, same entry; other content, another entry (and another merge cache key).
    assert publish_to_cache(tmp_path / "raft", "raft-platform") == reference
    other = publish_to_cache(_adapter_folder(tmp_path / "raft2", b"RAFT"), "raft-platform")
    assert json.loads(other)["key"] != json.loads(reference)["key"]

    (folder / "adapter" / "adapter_model.safetensors").write_bytes(b"raf")
    with pytest.raises(MongarsError, match="missing or differs") as error:
        resolve_from_cache(reference, "raft adapter")
    assert "\n" not in str(error.value)
    with pytest.raises(MongarsError, match="not a handoff reference"):
        resolve_from_cache("/minio/some/path", "raft adapter")


def test_handoff_without_a_volume_is_refused(tmp_path: Path, monkeypatch) -> None:
    from monGARS.mlops.handoff import publish_to_cache

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "absent"))
    with pytest.raises(MongarsError, match="mount model_cache_pvc"):
        publish_to_cache(_adapter_folder(tmp_path / "raft", b"x"), "raft-platform")


def test_hub_ids_are_keyed_by_their_pinned_commit(volume: Path) -> None:
    """A pinned commit names the cache entry without asking the hub (offline here)."""
    from monGARS.mlops.base_model import _cache_key, split_revision

    commit = "0123456789abcdef0123456789abcdef01234567"
    key, revision = _cache_key(f"mistralai/Mistral-7B-v0.2@{commit}", "hub")
    assert revision == commit and key.startswith("hub-mistralai--Mistral-7B-v0.2-")
    other, _ = _cache_key(f"mistralai/Mistral-7B-v0.2@{'f' * 40}", "hub")
    assert other != key
    assert split_revision("org/name") == ("org/name", None)
    with pytest.raises(MongarsError, match="downloads are off"):
        _cache_key("mistralai/Mistral-7B-v0.2", "hub")  # a moving revision needs the hub
