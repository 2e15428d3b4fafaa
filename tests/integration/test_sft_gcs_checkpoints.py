"""gs:// checkpoint roots on a local GCS emulator: upload marker-last, resume from the newest."""

from __future__ import annotations

from pathlib import Path

import pytest

from monGARS.mlops import storage
from monGARS.mlops.training.common.checkpoints import CheckpointStore, is_complete

pytestmark = pytest.mark.integration


def _fake_checkpoint(folder: Path, step: int) -> Path:
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_model.safetensors").write_bytes(b"w" * (100 + step))
    (checkpoint / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
    return checkpoint


def test_gcs_checkpoint_store_round_trip(gcs_bucket: str) -> None:
    bucket = gcs_bucket.removeprefix("gs://")
    writer = CheckpointStore(f"{gcs_bucket}/runs", "sft-m-key")
    assert writer.mirror and writer.prepare() is None
    for step in (10, 20, 30):
        writer.finish_checkpoint(_fake_checkpoint(writer.local_dir, step))
    writer.close()
    fs, _ = storage.filesystem_for(gcs_bucket)
    listed = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{bucket}/runs/sft-m-key"))
    assert listed == ["checkpoint-20", "checkpoint-30"], listed
    # An upload cut short: files of step 40 without its marker.
    fs.pipe(f"{bucket}/runs/sft-m-key/checkpoint-40/adapter_model.safetensors", b"x")
    reader = CheckpointStore(f"{gcs_bucket}/runs", "sft-m-key")
    resume = reader.prepare()
    assert resume is not None and resume.name == "checkpoint-30", resume
    assert is_complete(resume)
    assert (resume / "adapter_model.safetensors").read_bytes() == b"w" * 130
    reader.close()
