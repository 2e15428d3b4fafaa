"""Library results onto KFP-like artifacts, and user errors as one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from monGARS.mlops.artifacts import log_metrics, publish, stage_errors
from monGARS.mlops.errors import MongarsError


class FakeMetrics:
    """Stands in for dsl.Metrics: what matters is the calls made and the file written."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.metadata: dict = {}

    def log_metric(self, metric: str, value: float) -> None:
        self.metadata[metric] = value


def test_publish_flattens_nested_values(tmp_path: Path) -> None:
    artifact = FakeMetrics(tmp_path / "a")
    publish(artifact, {"n": 3, "name": "x", "nested": {"b": 1}, "bad": math.nan})
    assert artifact.metadata == {"n": 3, "name": "x", "nested": '{"b": 1}', "bad": "nan"}


def test_log_metrics_keeps_finite_numbers_and_writes_the_file(tmp_path: Path) -> None:
    metrics = FakeMetrics(tmp_path / "metrics")
    log_metrics(metrics, {"loss": 1.5, "steps": 3, "none": None, "nan": math.nan, "flag": True})
    assert metrics.metadata == {"loss": 1.5, "steps": 3.0}
    assert json.loads(Path(metrics.path).read_text()) == {"loss": 1.5, "steps": 3.0}


def test_stage_errors_print_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught, stage_errors("sft"):
        raise MongarsError("lora_r: must be >= 1 (got 0)")
    assert caught.value.code == 2
    assert capsys.readouterr().err == "error: sft: lora_r: must be >= 1 (got 0)\n"


def test_stage_errors_let_bugs_through() -> None:
    with pytest.raises(KeyError), stage_errors("sft"):
        raise KeyError("a bug keeps its traceback")
