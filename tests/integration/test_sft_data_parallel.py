"""sft as 2 data-parallel ranks (gloo, CPU) against 1 process with the same global batch.

The 2-rank run must give the same loss curve and adapter as one process that reaches the same
global batch by gradient accumulation; a rank SIGKILLed mid-run, then a re-run, must resume
(fewer tokens trained after the resume) and end with the same files; a run resumes with another
number of ranks; only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sft_data import MODULE, make_datasets

from monGARS.mlops.atomic import is_partial
from monGARS.mlops.training.common.checkpoints import MARKER, complete_checkpoints
from monGARS.mlops.training.sft.train import train_sft

pytestmark = pytest.mark.integration

# 24 module records, global batch 4: 6 steps an epoch, so 12 steps cross an epoch boundary.
# One process: micro batch 2 x accumulation 2; two ranks: micro batch 2 each, no accumulation.
# Dropout off: its noise is drawn per rank and cannot match one process's draws.
SETTINGS = {
    "max_steps": 12,
    "learning_rate": 3e-3,
    "lr_scheduler": "linear",
    "batch_size": 2,
    "gradient_accumulation_steps": 2,
    "max_seq_length": 256,
    "eval_steps": 6,
    "logging_steps": 1,
    "save_steps": 2,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "french_mix_ratio": 0.0,
}
# Measured: identical to the last bit on CPU fp32 (gloo sums two ranks' gradients exactly as
# accumulation does); the tolerance leaves room for a reduction order that differs elsewhere.
ADAPTER_ATOL = 1e-6
LOSS_RTOL = 1e-5
# Evaluation shards the val split across ranks, so per-batch means are weighted differently.
EVAL_RTOL = 1e-3


def _environment() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def _command(base: Path, data: Path, out: Path, root: Path, ranks: int) -> list[str]:
    command = [sys.executable, "-m", "monGARS.mlops.training.sft.cli"]
    command += ["--base-model", str(base), "--datasets", str(data), "--module", MODULE]
    command += ["--out", str(out)]
    values = {**SETTINGS, "checkpoint_root": str(root), "num_processes": ranks}
    for key, value in values.items():
        command += ["--set", f"{key}={value}"]
    return command


def _adapter(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def _assert_same_adapter(actual: Path, expected: Path) -> None:
    a, e = _adapter(actual), _adapter(expected)
    assert a.keys() == e.keys()
    for name, tensor in e.items():
        assert torch.allclose(a[name], tensor, rtol=0, atol=ADAPTER_ATOL), name


def _losses(out: Path) -> list[tuple[int, float]]:
    metrics = json.loads((out / "metrics.json").read_text())
    return [(entry["step"], entry["loss"]) for entry in metrics["loss_history"]]


def _files(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path, sample_corpus_dir: Path, tmp_path_factory) -> dict:
    """One process, global batch 4 by accumulation, uninterrupted."""
    root = tmp_path_factory.mktemp("dp")
    data = make_datasets(root / "data", sample_corpus_dir)
    values = {**SETTINGS, "checkpoint_root": str(root / "ckpt-1"), "num_processes": 1}
    metadata = train_sft(values, tiny_model_dir, data, MODULE, root / "one")
    assert metadata["world_size"] == 1 and metadata["steps"] == 12
    return {"root": root, "data": data, "out": root / "one", "metadata": metadata}


def test_two_ranks_match_one_process(tiny_model_dir: Path, reference: dict) -> None:
    root = reference["root"]
    values = {**SETTINGS, "checkpoint_root": str(root / "ckpt-2"), "num_processes": 2}
    metadata = train_sft(values, tiny_model_dir, reference["data"], MODULE, root / "two")
    out = root / "two"

    assert metadata["world_size"] == 2 and metadata["steps"] == 12
    assert metadata["trained_tokens"] == reference["metadata"]["trained_tokens"]  # both ranks'
    ours, theirs = _losses(out), _losses(reference["out"])
    assert [step for step, _ in ours] == [step for step, _ in theirs] == list(range(1, 13))
    for (step, loss), (_, expected) in zip(ours, theirs, strict=True):
        assert loss == pytest.approx(expected, rel=LOSS_RTOL), step
    assert metadata["eval_loss_after"] == pytest.approx(
        reference["metadata"]["eval_loss_after"], rel=EVAL_RTOL
    )
    _assert_same_adapter(out, reference["out"])

    # Written once, by rank 0: the same files as one process, nothing half-written beside them.
    assert _files(out) == _files(reference["out"])
    assert not [p for p in root.iterdir() if is_partial(p)]
    config = json.loads((out / "training_config.json").read_text())
    assert config["memory_plan"]["batch_size"] == 2
    assert config["memory_plan"]["gradient_accumulation_steps"] == 1  # per rank: 2 x 1 x 2 = 4
    # One checkpoint store for any number of ranks; each checkpoint complete, with both RNGs.
    (store,) = (root / "ckpt-2").iterdir()
    assert store.name == next((root / "ckpt-1").iterdir()).name
    for checkpoint in complete_checkpoints(store):
        assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in checkpoint.iterdir()}


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the training rank ``rank`` under the CLI process ``launcher``."""
    for pid in _descendants(launcher):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"LOCAL_RANK=" + str(rank).encode() in environ:
            return pid
    return None


def test_killed_rank_resumes_with_the_same_files(
    tiny_model_dir: Path, reference: dict, tmp_path: Path
) -> None:
    data, ckpt, out = reference["data"], tmp_path / "ckpt", tmp_path / "out"
    process = subprocess.Popen(
        _command(tiny_model_dir, data, out, ckpt, 2),
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    try:
        while not list(ckpt.glob(f"sft-{MODULE}-*/checkpoint-*/{MARKER}")):
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        victim = _rank_pid(process.pid, 1)
        assert victim is not None, "rank 1 not found"
        os.kill(victim, signal.SIGKILL)
    finally:
        process.wait(timeout=120)
        process.stderr.close()
    assert process.returncode != 0  # torchrun stops rank 0 and the launch fails
    assert not out.exists()  # nothing that looks finished

    (store,) = ckpt.iterdir()
    last = complete_checkpoints(store)[-1]
    step = int(last.name.split("-")[1])
    assert step < 12
    spare = tmp_path / "ckpt-copy"
    shutil.copytree(ckpt, spare)

    rerun = subprocess.run(
        _command(tiny_model_dir, data, out, ckpt, 2),
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert resumed["resumed_from_step"] == step and resumed["steps"] == 12
    assert resumed["world_size"] == 2
    # It continued: only the steps after the checkpoint were trained in this run.
    assert 0 < resumed["trained_tokens"] < reference["metadata"]["trained_tokens"]
    _assert_same_adapter(out, reference["out"])
    assert _files(out) == _files(reference["out"])
    for (s, loss), (_, expected) in zip(_losses(out), _losses(reference["out"]), strict=True):
        assert loss == pytest.approx(expected, rel=LOSS_RTOL), s

    # The same checkpoints resume in one process too: the store does not depend on the ranks.
    values = {**SETTINGS, "checkpoint_root": str(spare), "num_processes": 1}
    single = train_sft(values, tiny_model_dir, data, MODULE, tmp_path / "out-1")
    assert single["resumed_from_step"] == step and single["world_size"] == 1
    assert single["trained_tokens"] == resumed["trained_tokens"]
    _assert_same_adapter(tmp_path / "out-1", reference["out"])
