"""raft as 2 data-parallel ranks (gloo, CPU) against 1 process with the same global batch.

Rank 0 mines the examples and hands every rank the same set; the ranks share the training and the
held-out generation (each answers its slice, gathered in order); rank 0 alone writes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sft_data import MODULE, make_datasets

from monGARS.mlops.atomic import is_partial
from monGARS.mlops.training.raft.config import TINY_RAFT_OVERRIDES
from monGARS.mlops.training.raft.train import train_raft
from monGARS.mlops.training.sft.config import TINY_SFT_OVERRIDES
from monGARS.mlops.training.sft.train import train_sft

pytestmark = pytest.mark.integration

# Global batch 4: one process 2 x accumulation 2, two ranks 2 each (the same micro batches, so
# the same padding). Dropout off: its noise is drawn per rank. Short answers: the test checks who
# answers what, not the answers' quality.
SETTINGS = {
    **TINY_RAFT_OVERRIDES,
    "batch_size": 2,
    "gradient_accumulation_steps": 2,
    "max_steps": 4,
    "eval_steps": 2,
    "lora_dropout": 0.0,
    "eval_max_new_tokens": 8,
}
ADAPTER_ATOL = 1e-6  # measured: identical on CPU fp32
LOSS_RTOL = 1e-5
EVAL_RTOL = 1e-3  # evaluation shards the held-out set: per-batch means weigh differently


def test_two_ranks_match_one_process(
    tiny_model_dir: Path, sample_corpus_dir: Path, tmp_path: Path
) -> None:
    data = make_datasets(tmp_path / "data", sample_corpus_dir)
    sft = tmp_path / "sft"
    values = {**TINY_SFT_OVERRIDES, "french_mix_ratio": 0.0, "max_steps": 4}  # a short SFT
    train_sft(values, tiny_model_dir, data, MODULE, sft)
    encoder = tmp_path / "encoder"  # an llm2vec-layout output holding the tiny model itself
    shutil.copytree(tiny_model_dir, encoder / "encoder")
    (encoder / "encoder.json").write_text(json.dumps({"pooling": "mean", "max_length": 128}))

    outs, runs = {}, {}
    for ranks in (1, 2):
        outs[ranks] = tmp_path / f"raft-{ranks}"
        values = {**SETTINGS, "num_processes": ranks}
        runs[ranks] = train_raft(values, tiny_model_dir, sft, encoder, data, MODULE, outs[ranks])
    one, two = runs[1], runs[2]
    assert two["steps"] == one["steps"] == 4
    assert two["train_examples"] == one["train_examples"] == 34
    assert two["train_loss_last"] == pytest.approx(one["train_loss_last"], rel=LOSS_RTOL)
    assert two["heldout_loss_raft"] == pytest.approx(one["heldout_loss_raft"], rel=EVAL_RTOL)
    first, second = (json.loads((outs[n] / "metrics.json").read_text()) for n in (1, 2))
    assert second["world_size"] == 2 and first["world_size"] == 1
    assert [e["loss"] for e in second["loss_history"]] == pytest.approx(
        [e["loss"] for e in first["loss_history"]], rel=LOSS_RTOL
    )
    expected = load_file(str(outs[1] / "adapter" / "adapter_model.safetensors"))
    actual = load_file(str(outs[2] / "adapter" / "adapter_model.safetensors"))
    for name, tensor in expected.items():
        assert torch.allclose(actual[name], tensor, rtol=0, atol=ADAPTER_ATOL), name

    # Every held-out example answered once, in order, though each rank answered half of them.
    rows = [
        [json.loads(line) for line in (outs[n] / "heldout_generations.jsonl").open()]
        for n in (1, 2)
    ]
    assert [r["question"] for r in rows[1]] == [r["question"] for r in rows[0]]
    assert len(rows[1]) == 8
    files = [sorted(p.name for p in outs[n].rglob("*") if p.is_file()) for n in (1, 2)]
    assert files[0] == files[1]
    assert not [p for p in tmp_path.iterdir() if is_partial(p)]
