"""monGARS.mlops.storage and gs:// base models against a local GCS emulator (real gcsfs I/O)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from monGARS.mlops import storage
from monGARS.mlops.base_model import fetch_base_model
from monGARS.mlops.errors import MongarsError

pytestmark = pytest.mark.integration
pytest_plugins = ["gcs_emulator"]  # gcs_emulator, gcs_bucket fixtures


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _sample_tree(root: Path) -> Path:
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "readme.txt").write_text("bonjour, monGARS\n", encoding="utf-8")
    (root / "nested" / "data.jsonl").write_text('{"a": 1}\n{"a": 2}\n', encoding="utf-8")
    (root / "nested" / "deeper" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    return root


def test_upload_exists_download_round_trip(tmp_path: Path, gcs_bucket: str) -> None:
    source = _sample_tree(tmp_path / "source")
    uri = f"{gcs_bucket}/artifacts/run-1"
    assert not storage.exists(uri)

    storage.upload_tree(source, uri)

    assert storage.exists(uri)
    assert storage.exists(f"{uri}/nested/deeper/weights.bin")
    assert not storage.exists(f"{gcs_bucket}/artifacts/run-2")
    copy = storage.download_tree(uri, tmp_path / "copy")
    assert _tree_digest(copy) == _tree_digest(source)
    assert len(_tree_digest(copy)) == 3


def test_download_of_missing_prefix_is_one_line_error(tmp_path: Path, gcs_bucket: str) -> None:
    with pytest.raises(MongarsError, match=r"gs://.*/nothing-here: does not exist") as caught:
        storage.download_tree(f"{gcs_bucket}/nothing-here", tmp_path / "out")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_base_model_fetched_from_gcs_matches_the_original(
    tmp_path: Path, tiny_model_dir: Path, gcs_bucket: str
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    uri = f"{gcs_bucket}/models/tiny"
    storage.upload_tree(tiny_model_dir, uri)

    metadata = fetch_base_model(uri, tmp_path / "base")

    assert metadata["source"] == "gcs"
    assert metadata["base_model"] == uri
    fetched = tmp_path / "base"
    originals = {
        name: digest for name, digest in _tree_digest(tiny_model_dir).items() if "/" not in name
    }
    assert {k: v for k, v in _tree_digest(fetched).items() if k in originals} == originals
    ids = torch.tensor([[1, 5, 9, 3, 7, 2]])
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(ids).logits
        got = AutoModelForCausalLM.from_pretrained(fetched)(ids).logits
    assert torch.equal(expected, got)


def test_gcs_prefix_without_a_model_is_refused_and_leaves_nothing(
    tmp_path: Path, gcs_bucket: str
) -> None:
    not_a_model = _sample_tree(tmp_path / "junk")
    uri = f"{gcs_bucket}/models/junk"
    storage.upload_tree(not_a_model, uri)

    with pytest.raises(MongarsError, match=r"no config\.json"):
        fetch_base_model(uri, tmp_path / "base")
    assert not (tmp_path / "base").exists()
    assert not any(p.name.startswith(".base") for p in tmp_path.iterdir())
