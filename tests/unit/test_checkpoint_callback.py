"""The Trainer callback that marks each checkpoint once the Trainer has saved it.

Apart from tests/unit/test_checkpoints_edges.py because it imports transformers (~20 s on a
loaded machine), which would cost every mutant of the mutation run that much.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from monGARS.mlops.training.common import checkpoints
from monGARS.mlops.training.common.checkpoints import CheckpointStore, is_complete
from monGARS.mlops.training.common.distributed import World


def _unmarked_checkpoint(folder: Path, step: int) -> Path:
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_model.safetensors").write_bytes(b"w" * 10)
    return checkpoint


def test_the_callback_marks_the_checkpoint_the_trainer_just_saved(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path), "run")
    store.prepare()
    callback = checkpoints.checkpoint_callback(store, World())
    _unmarked_checkpoint(store.local_dir, 7)
    args = SimpleNamespace(output_dir=str(store.local_dir))
    control = object()
    assert callback.on_save(args, SimpleNamespace(global_step=7), control) is control
    assert is_complete(store.local_dir / "checkpoint-7")
    # A save step with no folder (the Trainer skipped it) marks nothing and creates nothing.
    assert callback.on_save(args, SimpleNamespace(global_step=8), control) is control
    assert not (store.local_dir / "checkpoint-8").exists()
