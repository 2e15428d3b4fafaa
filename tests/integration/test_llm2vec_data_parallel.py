"""llm2vec as 2 data-parallel ranks (gloo, CPU) against 1 process: MNTP, SimCSE and supervised.

Every phase splits each global micro-batch across the ranks; the contrastive phases gather the
embeddings with gradients, so their in-batch negatives are the global batch's. The 2-rank run must
give the same per-step losses and the same encoder as one process. The supervised batch (21 pairs)
splits unevenly (11 + 10 rows), which the gather must handle.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from monGARS.mlops.atomic import is_partial
from monGARS.mlops.training.common.checkpoints import MARKER, complete_checkpoints
from monGARS.mlops.training.llm2vec.config import TINY_LLM2VEC_OVERRIDES
from monGARS.mlops.training.llm2vec.train import train_llm2vec

pytestmark = pytest.mark.integration

DATASETS = Path(__file__).resolve().parents[1] / "fixtures" / "llm2vec" / "datasets"
# Dropout off everywhere: its noise is drawn per rank and cannot match one process's draws.
CONFIG = {
    **TINY_LLM2VEC_OVERRIDES,
    "contrastive_mode": "both",
    "mntp_steps": 3,
    "simcse_steps": 3,
    "supervised_steps": 3,
    "mntp_lora_dropout": 0.0,
    "simcse_lora_dropout": 0.0,
    "supervised_lora_dropout": 0.0,
    "simcse_dropout": 0.0,
}
# Measured on CPU fp32: losses within 3e-7 relative, encoder weights within 1.2e-6.
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5


def _encoder(out: Path) -> dict[str, torch.Tensor]:
    (weights,) = (out / "encoder").glob("*.safetensors")
    return load_file(str(weights))


def test_two_ranks_train_the_same_encoder(tiny_model_dir: Path, tmp_path: Path) -> None:
    runs = {}
    for ranks in (1, 2):
        out = tmp_path / f"ranks-{ranks}"
        # A checkpoint after every step: rank 0 writes each one while the other rank waits.
        checkpointed = {"checkpoint_root": str(tmp_path / "ckpt"), "save_steps": 1}
        metadata = train_llm2vec(
            {**CONFIG, **checkpointed, "num_processes": ranks},
            tiny_model_dir,
            None,
            DATASETS,
            "demo",
            out,
        )
        runs[ranks] = (out, metadata, json.loads((out / "metrics.json").read_text()))

    (one, _, one_metrics), (two, two_meta, two_metrics) = runs[1], runs[2]
    assert two_meta["contrastive_phases"] == "simcse,supervised"
    assert two_metrics["supervised"]["batch_size_used"] == 21  # 11 + 10 rows
    for phase in ("mntp", "simcse", "supervised"):
        assert two_metrics[phase]["losses"] == pytest.approx(
            one_metrics[phase]["losses"], rel=LOSS_RTOL
        ), phase
    expected, actual = _encoder(one), _encoder(two)
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert torch.allclose(actual[name], tensor, rtol=0, atol=WEIGHT_ATOL), name
    # One writer: the same files as one process, nothing half-written beside them.
    files = sorted(p.relative_to(two).as_posix() for p in two.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(one).as_posix() for p in one.rglob("*") if p.is_file())
    assert not [p for p in tmp_path.iterdir() if is_partial(p)]

    # The 2-rank store: complete checkpoints only, written once (one marker each), the lease gone.
    (store,) = [
        folder
        for folder in (tmp_path / "ckpt").iterdir()
        if two_metrics["checkpoint_location"].endswith(folder.name)
    ]
    assert complete_checkpoints(store)
    assert all((c / MARKER).is_file() for c in store.glob("checkpoint-*"))
    assert not (store / "writer.lease").exists()

    # Run again as 2 ranks: every rank resumes from rank 0's folder, trains nothing more, and
    # writes the same encoder.
    again = tmp_path / "ranks-2-again"
    resumed = train_llm2vec(
        {**CONFIG, "checkpoint_root": str(tmp_path / "ckpt"), "save_steps": 1, "num_processes": 2},
        tiny_model_dir,
        None,
        DATASETS,
        "demo",
        again,
    )
    assert resumed["optimizer_steps_run"] == 0, "the 2-rank rerun trained again"
    assert resumed["resumed_from_step"] == 9
    for name, tensor in _encoder(two).items():
        assert torch.allclose(_encoder(again)[name], tensor, rtol=0, atol=WEIGHT_ATOL), name
