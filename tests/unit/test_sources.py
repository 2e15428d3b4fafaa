"""resolve_sources: outside inputs become revisions that move exactly when the source does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monGARS.mlops import sources
from monGARS.mlops.errors import MongarsError


def _datasets_parameters(*uris: str, code_roots: list[str] | None = None) -> dict:
    config = {"sources": [{"uri": uri, "kind": "instruction"} for uri in uris]}
    if code_roots is not None:
        config["code_roots"] = code_roots
    return {"datasets_config": config}


def test_a_local_source_moves_with_its_bytes_only(tmp_path: Path) -> None:
    data = tmp_path / "corpus" / "instructions.jsonl"
    data.parent.mkdir()
    data.write_text('{"instruction": "a", "output": "b"}\n')
    parameters = _datasets_parameters(str(data))
    first = sources.dataset_revisions(parameters)
    assert list(first) == ["corpus_instructions"] and len(first["corpus_instructions"]) == 16
    data.touch()  # a new mtime, same bytes: same revision (no needless rebuild)
    assert sources.dataset_revisions(parameters) == first
    data.write_text('{"instruction": "a", "output": "c"}\n')
    assert sources.dataset_revisions(parameters) != first


def test_a_mined_tree_moves_with_the_files_the_miner_reads(tmp_path: Path) -> None:
    tree = tmp_path / "shop"
    tree.mkdir()
    (tree / "__init__.py").write_text("")
    (tree / "cart.py").write_text("def total(items):\n    return sum(items)\n")
    sample = "mongars://sample_fr/instruction.jsonl"
    parameters = _datasets_parameters(sample, code_roots=[str(tree)])
    first = sources.dataset_revisions(parameters)
    assert set(first) == {"sample_fr_instruction", f"code:{tree}"}
    (tree / "notes.bin").write_bytes(b"\x00not source")  # not mined: no change
    assert sources.dataset_revisions(parameters) == first
    (tree / "cart.py").write_text("def total(items):\n    return sum(items) + 1\n")
    changed = sources.dataset_revisions(parameters)
    assert changed[f"code:{tree}"] != first[f"code:{tree}"]
    assert changed["sample_fr_instruction"] == first["sample_fr_instruction"]


def test_base_model_revisions(tmp_path: Path, tiny_model_dir: Path) -> None:
    import shutil

    assert sources.base_model_revision("tiny") == sources.base_model_revision("tiny")
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    before = sources.base_model_revision(str(folder))
    (folder / "README.md").write_text("not read by fetch")  # outside the model file patterns
    assert sources.base_model_revision(str(folder)) == before
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "rope_theta": 1234.0}))
    assert sources.base_model_revision(str(folder)) != before
    pinned = "0123456789abcdef0123456789abcdef01234567"
    assert sources.base_model_revision(f"mistralai/Mistral-7B-v0.2@{pinned}") == pinned


def test_a_moving_hub_revision_needs_the_hub_and_says_so() -> None:
    """Offline (as tests are), an unpinned hub id cannot be resolved: one line, naming the fix."""
    with pytest.raises(MongarsError, match="HF_HUB_OFFLINE") as error:
        sources.resolve_sources(
            {"base_model": "mistralai/Mistral-7B-v0.2", **_datasets_parameters("hf://org/ds")}
        )
    message = str(error.value)
    assert "\n" not in message and "base_model:" in message and "datasets:" in message


def test_a_missing_local_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MongarsError, match="does not exist"):
        sources.dataset_revisions(_datasets_parameters(str(tmp_path / "absent.jsonl")))


@pytest.mark.integration
def test_a_gcs_source_moves_with_its_object_generations(gcs_bucket: str, tmp_path: Path) -> None:
    from monGARS.mlops import storage

    local = tmp_path / "upload"
    local.mkdir()
    (local / "part-0.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    prefix = f"{gcs_bucket}/corpora/fr"
    storage.upload_tree(local, prefix)
    parameters = _datasets_parameters(prefix)
    first = sources.dataset_revisions(parameters)
    assert sources.dataset_revisions(parameters) == first
    (local / "part-0.jsonl").write_text('{"instruction": "a", "output": "c"}\n')
    storage.upload_tree(local, prefix)  # rewritten: a new generation
    assert sources.dataset_revisions(parameters) != first
    with pytest.raises(MongarsError, match="no object there"):
        sources.gcs_generations(f"{gcs_bucket}/nothing-here")
