"""A shared cache volume the image's user cannot write fails the stage in one line (issue 22, 6).

Before, ``cache_dir(writable=True)`` answered None for such a volume, so ``fetch_base_model``
quietly copied the weights into its artifact and sft/raft ran without checkpoints (no resume after
a preemption), with not a word in the logs. The volume here is really read-only: a read-only tmpfs
mounted in a private mount namespace when the tests run as root (root ignores file modes), a
``chmod 555`` folder otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from monGARS.mlops.shared_cache import CACHE_DIR_ENV

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys
from pathlib import Path
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.shared_cache import default_checkpoint_root
from monGARS.mlops.base_model import fetch_base_model

results = {}
for name, call in (
    ("checkpoint_root", default_checkpoint_root),
    ("fetch_base_model", lambda: fetch_base_model("tiny", sys.argv[1])),
):
    try:
        results[name] = {"returned": str(call())}
    except MongarsError as error:
        results[name] = {"error": str(error)}
results["artifact_written"] = Path(sys.argv[1]).exists()
print(json.dumps(results))
"""


def _run_on_read_only_volume(volume: Path, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), **{CACHE_DIR_ENV: str(volume)})
    probe = [sys.executable, "-c", PROBE, str(out)]
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("root without unshare(1): no way to make a folder read-only for root")
        command = [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount -t tmpfs -o ro tmpfs "$0" && exec "$@"',
            str(volume),
            *probe,
        ]
    else:
        volume.chmod(0o555)
        command = probe
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 and "mount" in result.stderr:
        pytest.skip(f"cannot mount a read-only tmpfs here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_an_unwritable_volume_is_one_clear_error_never_a_silent_fallback(tmp_path: Path) -> None:
    volume = tmp_path / "model-cache"
    volume.mkdir()
    results = _run_on_read_only_volume(volume, tmp_path / "artifact")
    for stage in ("checkpoint_root", "fetch_base_model"):
        assert "error" in results[stage], f"{stage} fell back silently: {results[stage]}"
        message = results[stage]["error"]
        assert message.startswith(f"model_cache_pvc: the shared cache volume at {volume}")
        assert "is not writable by uid" in message and "\n" not in message
    assert results["artifact_written"] is False  # no weights copied into the artifact instead


def test_a_writable_volume_and_no_volume_still_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monGARS.mlops.shared_cache import default_checkpoint_root

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    assert default_checkpoint_root() == str(tmp_path / "checkpoints")
    assert not list(tmp_path.iterdir())  # the write probe leaves nothing behind
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "absent"))
    assert default_checkpoint_root() == ""  # no volume (a local run without one): no resume
