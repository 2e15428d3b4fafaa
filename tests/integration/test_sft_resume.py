"""SIGKILL mid-training, a *new* run with the same inputs: it continues (optimizer, scheduler, data
order and RNG restored, only the remaining optimizer steps run) and ends with the same adapter."""

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

from monGARS.mlops.training.common.checkpoints import MARKER, complete_checkpoints
from monGARS.mlops.training.sft.train import train_sft

pytestmark = pytest.mark.integration

# 60 steps over 30 records (batch 4): resuming at step 10 lands mid-epoch, and the run crosses
# several epoch boundaries after it, so data order and RNG must both be restored.
SETTINGS = {
    "max_steps": 60,
    "learning_rate": 3e-3,
    "lr_scheduler": "linear",
    "batch_size": 4,
    "gradient_accumulation_steps": 1,
    "max_seq_length": 256,
    "eval_steps": 20,
    "logging_steps": 5,
    "save_steps": 10,
    "lora_r": 8,
    "lora_alpha": 16,
}


def _command(base: Path, data: Path, out: Path, root: Path) -> list[str]:
    command = [sys.executable, "-m", "monGARS.mlops.training.sft.cli"]
    command += ["--base-model", str(base), "--datasets", str(data), "--module", MODULE]
    command += ["--out", str(out)]
    for key, value in {**SETTINGS, "checkpoint_root": str(root)}.items():
        command += ["--set", f"{key}={value}"]
    return command


def _environment() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def test_killed_run_resumes_to_the_same_adapter(
    tiny_model_dir: Path, sample_corpus_dir: Path, tmp_path: Path
) -> None:
    data = make_datasets(tmp_path / "data", sample_corpus_dir)

    # Reference: uninterrupted, with its own checkpoint root so nothing is shared.
    reference = train_sft(
        {**SETTINGS, "checkpoint_root": str(tmp_path / "ckpt-ref")},
        tiny_model_dir,
        data,
        MODULE,
        tmp_path / "ref",
    )
    assert reference["resumed_from_step"] == 0 and reference["steps"] == 60
    assert reference["optimizer_steps_run"] == 60

    root = tmp_path / "ckpt"
    out = tmp_path / "out"
    process = subprocess.Popen(
        _command(tiny_model_dir, data, out, root),
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    try:
        while not list(root.glob(f"sft-{MODULE}-*/checkpoint-*/{MARKER}")):
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not out.exists()  # nothing that looks finished

    (run_dir,) = root.iterdir()
    complete = complete_checkpoints(run_dir)
    assert complete
    last = complete[-1]
    step = int(last.name.split("-")[1])
    assert step < 60
    # A half-written later checkpoint (the Trainer was cut mid-save): files, no marker.
    partial = run_dir / "checkpoint-50"
    shutil.copytree(last, partial)
    (partial / MARKER).unlink()
    (partial / "optimizer.pt").write_bytes(b"truncated")

    # A new run: its own output folder (KFP gives each run its own artifact paths); only the
    # parameters and inputs are the same, and they alone key the checkpoint folder.
    new_out = tmp_path / "out-new-run"
    rerun = subprocess.run(
        _command(tiny_model_dir, data, new_out, root),
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert resumed["resumed_from_step"] == step
    assert resumed["steps"] == 60
    # It continued: only the remaining steps ran. A resume that restarted at step 0 (e.g.
    # ``trainer.train(resume_from_checkpoint=None)``) runs all 60 and ends with the same adapter
    # on this deterministic CPU setup, so the adapter alone would not tell.
    assert resumed["optimizer_steps_run"] == 60 - step
    assert not partial.exists() or (partial / MARKER).is_file()  # removed, never resumed from
    check_continued(tmp_path / "ref", new_out, step, total=60)
    assert resumed["eval_loss_after"] == reference["eval_loss_after"]
    assert resumed["train_loss_first"] == reference["train_loss_first"]

    expected = load_file(str(tmp_path / "ref" / "adapter" / "adapter_model.safetensors"))
    actual = load_file(str(new_out / "adapter" / "adapter_model.safetensors"))
    names = sorted(p.relative_to(new_out).as_posix() for p in new_out.rglob("*") if p.is_file())
    assert names == sorted(
        p.relative_to(tmp_path / "ref").as_posix()
        for p in (tmp_path / "ref").rglob("*")
        if p.is_file()
    )
    configs = [
        json.loads((folder / "adapter" / "adapter_config.json").read_text())
        for folder in (new_out, tmp_path / "ref")
    ]
    for config in configs:  # PEFT writes this set in hash order, which varies per process
        config["target_modules"] = sorted(config["target_modules"])
    assert configs[0] == configs[1]
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        # CPU fp32 with one thread: identical, not merely close.
        assert torch.equal(actual[name], tensor), name
    assert resumed["eval_loss_after"] == reference["eval_loss_after"]
    assert resumed["train_loss_first"] == reference["train_loss_first"]
    # Optimizer and scheduler state restored: the losses logged after the resume step are the
    # uninterrupted run's (fresh Adam moments or a restarted warmup would move them).
    history = json.loads((new_out / "metrics.json").read_text())["loss_history"]
    reference_history = json.loads((tmp_path / "ref" / "metrics.json").read_text())["loss_history"]
    after = [entry for entry in history if entry["step"] > step]
    assert after and after == [entry for entry in reference_history if entry["step"] > step]
    assert not list(root.glob(f"sft-{MODULE}-*/writer.lease"))  # released at the end


def check_continued(reference_dir: Path, resumed_dir: Path, step: int, *, total: int) -> None:
    """Evidence that the run in ``resumed_dir`` continued from checkpoint ``step``.

    A restart from step 0 gives the same adapter on CPU, and ``resumed_from_step`` is only the
    folder's name, so neither proves a resume. What does: this process ran only the optimizer steps
    after the checkpoint (fewer tokens than a fresh run), the learning rate of every logged step
    is the uninterrupted run's (scheduler state restored), the losses after the checkpoint are the
    uninterrupted run's (optimizer moments restored: fresh Adam moments change the very next
    update), and the final adapter is bit-identical.
    """
    reference = json.loads((reference_dir / "metrics.json").read_text(encoding="utf-8"))
    resumed = json.loads((resumed_dir / "metrics.json").read_text(encoding="utf-8"))
    assert reference["optimizer_steps_run"] == total
    assert resumed["optimizer_steps_run"] == total - step, (
        f"the rerun ran {resumed['optimizer_steps_run']} optimizer steps in its own process; "
        f"checkpoint-{step} leaves {total - step}: the checkpoint was not resumed from"
    )
    assert 0 < resumed["trained_tokens"] < reference["trained_tokens"], (
        "the rerun trained as many tokens as a fresh run: it restarted instead of resuming"
    )
    assert resumed["learning_rate_history"] == reference["learning_rate_history"], (
        "the learning rates after the resume differ from the uninterrupted run's: "
        "the scheduler state was not restored"
    )
    losses = {e["step"]: e["loss"] for e in reference["loss_history"]}
    after = [e for e in resumed["loss_history"] if e["step"] > step]
    assert after, "no loss was logged after the resume"
    for entry in after:
        assert entry["loss"] == losses[entry["step"]], (
            f"loss at step {entry['step']} is {entry['loss']}, the uninterrupted run's "
            f"{losses[entry['step']]}: the optimizer state was not restored"
        )
    expected = load_file(str(reference_dir / "adapter" / "adapter_model.safetensors"))
    actual = load_file(str(resumed_dir / "adapter" / "adapter_model.safetensors"))
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        # CPU fp32 with one thread: identical, not merely close.
        assert torch.equal(actual[name], tensor), f"{name} differs from the uninterrupted run's"
