"""llm2vec killed mid-phase (SIGKILL), then a *new* run with the same inputs: it continues.

MNTP (finished before the kill) is rebuilt from its saved LoRA, SimCSE continues from its last
checkpoint with its AdamW state, batch position and random streams, and the supervised phase runs
as usual: the encoder is tensor for tensor the uninterrupted run's, and only the remaining
optimizer steps ran (a restart at step 0 would run them all and pass every other check here).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from monGARS.mlops.training.common.checkpoints import MARKER, complete_checkpoints
from monGARS.mlops.training.common.lease import LEASE_FILE
from monGARS.mlops.training.llm2vec.config import TINY_LLM2VEC_OVERRIDES
from monGARS.mlops.training.llm2vec.train import train_llm2vec

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO / "tests" / "fixtures" / "llm2vec" / "datasets"
MODULE = "demo"
STEPS = {"mntp_steps": 8, "simcse_steps": 12, "supervised_steps": 6}
TOTAL = sum(STEPS.values())
CONFIG = {**TINY_LLM2VEC_OVERRIDES, **STEPS, "contrastive_mode": "both", "save_steps": 3}

RUN = r"""
import json, sys
from monGARS.mlops.training.llm2vec.train import train_llm2vec
config = json.loads(sys.argv[1])
print(json.dumps(train_llm2vec(config, sys.argv[2], None, sys.argv[3], "demo", sys.argv[4])))
"""


def _command(config: dict, base: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", RUN, json.dumps(config), str(base), str(DATASETS), str(out)]


def _environment() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO))
    return env


def _encoder(out: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for path in sorted((out / "encoder").glob("*.safetensors")):
        tensors.update(load_file(str(path)))
    return tensors


def test_killed_llm2vec_resumes_mid_phase_to_the_same_encoder(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    reference = train_llm2vec(
        {**CONFIG, "checkpoint_root": str(tmp_path / "ckpt-ref")},
        tiny_model_dir,
        None,
        DATASETS,
        MODULE,
        tmp_path / "ref",
    )
    assert reference["resumed_from_step"] == 0 and reference["optimizer_steps_run"] == TOTAL

    root = tmp_path / "ckpt"
    config = {**CONFIG, "checkpoint_root": str(root)}
    process = subprocess.Popen(
        _command(config, tiny_model_dir, tmp_path / "killed"),
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    mid_simcse = STEPS["mntp_steps"] + 3  # SimCSE's first mid-phase checkpoint
    try:
        while not list(root.glob(f"llm2vec-{MODULE}-*/checkpoint-{mid_simcse}/{MARKER}")):
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no SimCSE checkpoint appeared"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        process.stderr.close()
    assert not (tmp_path / "killed").exists()
    (folder,) = root.iterdir()
    assert (folder / LEASE_FILE).is_file()  # left by the killed writer
    step = int(complete_checkpoints(folder)[-1].name.split("-")[1])
    assert STEPS["mntp_steps"] < step < STEPS["mntp_steps"] + STEPS["simcse_steps"]

    new_out = tmp_path / "new-run"
    rerun = subprocess.run(
        _command(config, tiny_model_dir, new_out),
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert resumed["resumed_from_step"] == step
    assert resumed["optimizer_steps_run"] == TOTAL - step

    expected, actual = _encoder(tmp_path / "ref"), _encoder(new_out)
    assert expected and expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert torch.equal(actual[name], tensor), name  # CPU fp32, one thread: identical
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (new_out, tmp_path / "ref")]
    for phase in ("mntp", "simcse", "supervised"):
        assert metrics[0][phase]["losses"] == metrics[1][phase]["losses"], phase
    assert metrics[0]["retrieval"] == metrics[1]["retrieval"]
    assert sorted(p.name for p in new_out.rglob("*")) == sorted(
        p.name for p in (tmp_path / "ref").rglob("*")
    )
    assert not (folder / LEASE_FILE).exists()
