"""The launcher for real: 2 gloo ranks started by ``distributed.launch`` (torchrun).

With gathered embeddings, a contrastive loss split across ranks gives every parameter the
global batch's gradient; with each rank's shard alone it does not. A user mistake raised in the
ranks comes back as one line.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.common.distributed import launch

pytestmark = pytest.mark.integration


@pytest.fixture
def worker_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))


def test_gathered_contrastive_loss_gives_the_global_gradient(worker_on_path: None) -> None:
    """2 gloo ranks, 5 pairs (3 + 2 rows): with gathered embeddings, the summed gradients and
    the summed loss shares are the whole batch's; with each rank's shard alone they are not."""
    result = launch("dp_gather_worker:run", {"batch": 5, "gather": True}, 2)
    assert result["world_size"] == 2 and result["rows"] == [5]
    assert result["loss"] == pytest.approx(result["expected_loss"], rel=1e-6)
    assert result["max_grad_error"] <= 1e-6 * max(1.0, result["max_grad"])

    local = launch("dp_gather_worker:run", {"batch": 5, "gather": False}, 2)
    assert local["rows"] == [3]
    assert local["max_grad_error"] > 1e-3 * local["max_grad"]


def test_a_rank_error_comes_back_as_one_line() -> None:
    """A user mistake raised in the ranks is the launcher's ``MongarsError``, not a traceback."""
    entry = "monGARS.mlops.training.common.distributed:split_batch"
    arguments = {"batch_size": 3, "accumulation": 1, "world_size": 2}
    with pytest.raises(MongarsError, match=r"^batch_size: the global batch .* 2 ranks") as caught:
        launch(entry, arguments, 2)
    assert "\n" not in str(caught.value)
