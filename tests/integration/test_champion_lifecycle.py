"""Nightly retraining on the tiny model, for real: train, export, evaluate, gate, publish.

Run 1 is promoted; run 2, trained at a destructive learning rate (10x the tiny default), is
rejected and leaves the registry byte for byte as it was; run 3, trained longer, is promoted; a
rollback through ``mongars champion rollback`` restores run 1's files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sft_data import MODULE, make_datasets

from monGARS.mlops.evaluate.config import TINY_EVALUATE_OVERRIDES
from monGARS.mlops.evaluate.promote import promote_modules
from monGARS.mlops.evaluate.registry import ChampionRegistry
from monGARS.mlops.evaluate.run import evaluate_module
from monGARS.mlops.export.export import export_module
from monGARS.mlops.modeling import merge_adapter_to_folder
from monGARS.mlops.training.sft.config import TINY_SFT_OVERRIDES
from monGARS.mlops.training.sft.train import train_sft

pytestmark = pytest.mark.integration


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (the registry), by relative path: a byte-for-byte snapshot."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def sha256s(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.gguf")}


def nightly(root: Path, base: Path, data: Path, tag: str, registry: str, **sft: object) -> dict:
    """One night of the pipeline's per-module chain, then the promote step."""
    adapter = root / f"sft-{tag}"
    train_sft({**TINY_SFT_OVERRIDES, "checkpoint_root": "", **sft}, base, data, MODULE, adapter)
    merged = root / f"merged-{tag}"
    merge_adapter_to_folder(base, adapter, merged)
    gguf = root / f"gguf-{tag}"
    export_module({"quant_types": ["q8_0"], "n_ctx": 512}, merged, None, None, MODULE, gguf)
    evaluation = root / f"evaluation-{tag}"
    evaluate_module(TINY_EVALUATE_OVERRIDES, gguf, merged, base, data, MODULE, evaluation)
    lineage = {"run_id": tag, "job_name": f"night-{tag}", "image": "test-image:1"}
    return promote_modules(
        {"registry": registry}, [evaluation], [gguf], lineage, root / f"promotion-{tag}"
    )


def test_only_improvements_are_published_and_a_rollback_restores(
    tiny_model_dir: Path,
    sample_corpus_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MONGARS_CACHE_DIR", str(tmp_path / "cache"))  # the base GGUF, once
    (tmp_path / "cache").mkdir()
    data = make_datasets(tmp_path / "data", sample_corpus_dir)
    registry_dir = tmp_path / "champions"
    registry = ChampionRegistry(str(registry_dir))

    first = nightly(tmp_path, tiny_model_dir, data, "one", str(registry_dir))
    result = first["modules"][MODULE]
    assert first["promoted"] == [MODULE], result["reasons"]
    assert result["figures"]["champion"] is None  # nothing to beat yet
    version_one = registry.pointer(MODULE).version
    stored = registry_dir / MODULE / "versions" / version_one
    assert sha256s(stored) == sha256s(tmp_path / "gguf-one")
    lineage = registry.manifest(MODULE, version_one)["lineage"]
    assert lineage["job_name"] == "night-one" and lineage["image"] == "test-image:1"
    assert lineage["base_key"] and lineage["module_datasets_sha256"]
    training = lineage["parameters"]["training"]["config"]
    assert training["learning_rate"] == TINY_SFT_OVERRIDES["learning_rate"]
    assert list((tmp_path / "cache" / "evaluate" / "base-gguf").iterdir())  # converted once
    evaluation = json.loads((tmp_path / "evaluation-one" / "evaluation.json").read_text())
    assert evaluation["base_gguf"] == "converted" and evaluation["quant"] == "Q8_0"
    assert abs(evaluation["gguf_vs_hf"]["nll_delta"]) < 0.05  # Q8_0 costs little on the task

    before = tree_bytes(registry_dir)
    second = nightly(
        tmp_path,
        tiny_model_dir,
        data,
        "two",
        str(registry_dir),
        learning_rate=10 * TINY_SFT_OVERRIDES["learning_rate"],
    )
    rejected = second["modules"][MODULE]
    assert second["rejected"] == [MODULE]
    assert rejected["reasons"], "a rejection names its reasons"
    assert any(r.startswith("assistant NLL") for r in rejected["reasons"])
    champion_figures = rejected["figures"]["champion"]
    assert champion_figures["version"] == version_one  # the champion, re-scored on run 2's items
    assert tree_bytes(registry_dir) == before  # byte for byte: a rejected night writes nothing

    again = json.loads((tmp_path / "evaluation-two" / "evaluation.json").read_text())
    assert again["base_gguf"] == "cached"  # the same base revision is not converted twice

    third = nightly(tmp_path, tiny_model_dir, data, "three", str(registry_dir), max_steps=60)
    promoted = third["modules"][MODULE]
    assert third["promoted"] == [MODULE], promoted["reasons"]
    tuned, champion = promoted["figures"]["tuned"], promoted["figures"]["champion"]
    assert tuned["assistant_nll"] < champion["assistant_nll"]
    version_three = registry.pointer(MODULE).version
    assert version_three != version_one
    assert registry.pointer(MODULE).data["history"] == [version_one]

    from monGARS.cli import main

    assert main(["champion", "list", "--registry", str(registry_dir)]) == 0
    assert version_three in capsys.readouterr().out
    assert main(["champion", "rollback", MODULE, "--registry", str(registry_dir)]) == 0
    assert f"champion is now {version_one}" in capsys.readouterr().out
    restored = registry_dir / MODULE / "versions" / registry.pointer(MODULE).version
    assert sha256s(restored) == sha256s(tmp_path / "gguf-one")
    assert (restored / "Modelfile").read_bytes() == (
        tmp_path / "gguf-one" / "Modelfile"
    ).read_bytes()
