"""gs:// checkpoint roots on a local GCS emulator: upload marker-last, resume from the newest."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.integration

# Run in a child process: gcsfs picks its filesystem class at import time from
# GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT, and its default class probes the bucket type over gRPC, which
# the emulator does not serve (a 60 s timeout per bucket).
SCRIPT = textwrap.dedent(
    """
    from pathlib import Path
    from monGARS.mlops import storage
    from monGARS.mlops.training.checkpoints import CheckpointStore, write_marker, is_complete

    def fake(folder, step):
        checkpoint = folder / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "adapter_model.safetensors").write_bytes(b"w" * (100 + step))
        (checkpoint / "trainer_state.json").write_text('{"global_step": %d}' % step)
        return checkpoint

    writer = CheckpointStore("gs://ckpt-bucket/runs", "sft-m-key")
    assert writer.mirror and writer.prepare() is None
    for step in (10, 20, 30):
        writer.finish_checkpoint(fake(writer.local_dir, step))
    writer.close()
    fs, _ = storage.filesystem_for("gs://ckpt-bucket")
    listed = sorted(p.rsplit("/", 1)[1] for p in fs.ls("ckpt-bucket/runs/sft-m-key"))
    assert listed == ["checkpoint-20", "checkpoint-30"], listed
    # An upload cut short: files of step 40 without its marker.
    fs.pipe("ckpt-bucket/runs/sft-m-key/checkpoint-40/adapter_model.safetensors", b"x")
    reader = CheckpointStore("gs://ckpt-bucket/runs", "sft-m-key")
    resume = reader.prepare()
    assert resume is not None and resume.name == "checkpoint-30", resume
    assert is_complete(resume)
    assert (resume / "adapter_model.safetensors").read_bytes() == b"w" * 130
    reader.close()
    print("ok")
    """
)


@pytest.fixture()
def emulator() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    server = create_server("localhost", port, in_memory=True, default_bucket="ckpt-bucket")
    server.start()
    try:
        yield f"http://localhost:{port}"
    finally:
        server.stop()


def test_gcs_checkpoint_store_round_trip(emulator: str) -> None:
    env = dict(
        os.environ, STORAGE_EMULATOR_HOST=emulator, GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false"
    )
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
