"""Resumable llm2vec: checkpoints of the phases (MNTP, then SimCSE and/or supervised) on the volume.

The stage runs its own loop (``lora.train_steps``), so it checkpoints itself, into the same
``CheckpointStore`` sft and raft use (writer lease, completeness marker, two kept):
``<checkpoint_root>/llm2vec-<module>-<key>/checkpoint-<N>``, ``N`` counting optimizer steps over
all phases. The key hashes what determines the training — the base model's and the SFT adapter's
files, the texts, pairs and evaluation set actually used, the config (where and how often
checkpoints are written left out) and the code version — never the run, so a *new* run with the
same parameters resumes a killed one.

A checkpoint holds what makes the continuation exact, not merely close:

- ``adapters/<i>-<phase>.safetensors``: the LoRA of each finished phase. Finished phases are
  rebuilt by attaching the LoRA again, loading these weights and merging, which gives the very
  weights the uninterrupted run merged (a merged full model would be the size of the base model);
- ``current.safetensors`` and ``optimizer.pt``: the phase in progress, its LoRA and AdamW state;
- ``rng.pt``: torch's CPU (and CUDA) generator, Python's ``random`` and MNTP's masking generator.
  The batch streams are seeded iterators, fast-forwarded by the number of micro-batches drawn;
- ``state.json``: phase index, steps done in it, the losses and retrieval figures so far.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import write_json
from monGARS.mlops.training.common.checkpoints import (
    CheckpointStore,
    adapter_digest,
    complete_checkpoints,
    hash_tree,
    prepare_for_ranks,
    run_key,
)
from monGARS.mlops.training.common.distributed import World, barrier

STATE = "state.json"
ADAPTERS = "adapters"
CURRENT = "current.safetensors"
OPTIMIZER = "optimizer.pt"
RNG = "rng.pt"
KEEP = 2
# Fields that change where or how often checkpoints are written, not what is trained.
KEY_EXCLUDED = ("checkpoint_root", "save_steps")


@dataclasses.dataclass
class Progress:
    """Where the stage stands: the phase in progress and what the finished ones produced."""

    phase_index: int = 0
    phase_step: int = 0
    losses: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    retrieval: dict[str, Any] = dataclasses.field(default_factory=dict)
    global_step: int = 0


@dataclasses.dataclass(frozen=True)
class Resumed:
    """A complete checkpoint to continue from."""

    folder: Path
    progress: Progress

    def adapter(self, index: int, phase: str) -> Path:
        return self.folder / ADAPTERS / f"{index}-{phase}.safetensors"

    @property
    def current(self) -> Path:
        return self.folder / CURRENT

    def load_optimizer(self) -> dict[str, Any]:
        import torch

        state: dict[str, Any] = torch.load(self.folder / OPTIMIZER, weights_only=True)
        return state

    def restore_rng(self, generator: Any) -> None:
        """Put every random stream back where it was when the checkpoint was written."""
        import torch

        saved = torch.load(self.folder / RNG, weights_only=False)
        torch.set_rng_state(saved["torch"])
        if saved.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda"])
        random.setstate(saved["python"])
        generator.set_state(saved["generator"])


def checkpoint_key(
    config: dict[str, Any],
    base_model_dir: Path,
    sft_adapter: Path | None,
    module: str,
    data: dict[str, Any],
    code_version: str,
) -> str:
    """The folder key: every input that changes the encoder, nothing about the run."""
    return run_key(
        {
            "base_model": hash_tree(base_model_dir),
            "sft_adapter": adapter_digest(sft_adapter) if sft_adapter else None,
            "module": module,
            "config": {k: v for k, v in config.items() if k not in KEY_EXCLUDED},
            "data": run_key(data),
            "code": code_version,
        }
    )


class Llm2VecCheckpoints:
    """Write and find llm2vec checkpoints in one ``CheckpointStore``."""

    def __init__(self, store: CheckpointStore, save_steps: int, world: World | None = None) -> None:
        self.store = store
        self.save_steps = save_steps
        self.world = world or World()
        self.finished: dict[tuple[int, str], dict[str, Any]] = {}

    def resume(self) -> Resumed | None:
        """Take the lease, drop half-written checkpoints, return the newest complete one.

        With data-parallel ranks, rank 0 does this (``prepare_for_ranks``) and every rank resumes
        from the same folder: the LoRA and AdamW state are the same on every rank, and the random
        streams restored are rank 0's, so a resumed multi-rank run continues from the checkpoint
        but its dropout draws differ from an uninterrupted run's (the one-process resume is exact).
        """
        newest = prepare_for_ranks(self.store, self.world)
        if newest is None:
            return None
        state = json.loads((newest / STATE).read_text(encoding="utf-8"))
        return Resumed(newest, Progress(**state))

    def due(self, phase_step: int, phase_steps: int) -> bool:
        """A mid-phase checkpoint every ``save_steps`` (the phase's end has its own)."""
        return 0 < phase_step < phase_steps and phase_step % self.save_steps == 0

    def finish_phase(self, index: int, phase: str, lora_state: dict[str, Any]) -> None:
        """Keep a finished phase's LoRA for every later checkpoint (it rebuilds the merge)."""
        self.finished[(index, phase)] = {k: v.detach().cpu().clone() for k, v in lora_state.items()}

    def save(
        self,
        progress: Progress,
        generator: Any,
        lora_state: dict[str, Any] | None = None,
        optimizer: Any = None,
    ) -> Path:
        """Write ``checkpoint-<global_step>`` file by file, mark it complete, keep the last two.

        Rank 0 alone writes (it holds the lease); the other ranks wait for it, so no rank runs
        ahead of a checkpoint that a kill could then leave unwritten.
        """
        import torch
        from safetensors.torch import save_file

        if not self.world.is_main:
            barrier(self.world)
            return self.store.local_dir / f"checkpoint-{progress.global_step}"
        self.store.check_lease()
        folder = self.store.local_dir / f"checkpoint-{progress.global_step}"
        shutil.rmtree(folder, ignore_errors=True)
        (folder / ADAPTERS).mkdir(parents=True)
        for (index, phase), tensors in sorted(self.finished.items()):
            save_file(tensors, str(folder / ADAPTERS / f"{index}-{phase}.safetensors"))
        if lora_state is not None:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in lora_state.items()},
                str(folder / CURRENT),
            )
        if optimizer is not None:
            torch.save(optimizer.state_dict(), folder / OPTIMIZER)
        torch.save(
            {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "python": random.getstate(),
                "generator": generator.get_state(),
            },
            folder / RNG,
        )
        write_json(folder / STATE, dataclasses.asdict(progress))
        self.store.finish_checkpoint(folder)
        for old in complete_checkpoints(self.store.local_dir)[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
        barrier(self.world)
        return folder
