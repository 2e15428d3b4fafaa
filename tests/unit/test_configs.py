"""Typed configs: every problem reported at once, with the field and the fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest

from monGARS.mlops.configs import Checks, load_config, read_config_file
from monGARS.mlops.errors import ConfigError, MongarsError


@dataclasses.dataclass(frozen=True)
class ExampleConfig:
    CONFIG_NAME = "example"
    rank: int = 8
    rate: float = 1e-3
    mode: Literal["fast", "slow"] = "fast"
    names: list[str] = dataclasses.field(default_factory=lambda: ["a"])
    flag: bool = False

    def problems(self) -> list[str]:
        checks = Checks()
        checks.at_least("rank", self.rank, 1)
        checks.positive("rate", self.rate)
        return checks.found


def test_defaults_and_coercion() -> None:
    config = load_config(ExampleConfig, {"rank": "4", "rate": 1, "names": "x, y", "flag": "true"})
    assert config == ExampleConfig(rank=4, rate=1.0, names=["x", "y"], flag=True)


def test_all_type_problems_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(ExampleConfig, {"rank": "many", "mode": "medium", "colour": "red"})
    message = str(caught.value)
    assert "\n" not in message
    assert "3 problems" in message
    assert "rank: expected int" in message
    assert "mode: expected 'fast' | 'slow'" in message
    assert "colour: unknown field" in message


def test_semantic_problems_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(ExampleConfig, {"rank": 0, "rate": -1})
    assert caught.value.problems == [
        "rank: must be >= 1 (got 0)",
        "rate: must be > 0 (got -1.0)",
    ]


def test_bool_is_not_an_int() -> None:
    with pytest.raises(ConfigError, match="rank: expected int"):
        load_config(ExampleConfig, {"rank": True})


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("[1, 2]", "expected a mapping"),
        ("rank: [unclosed", "not valid YAML/JSON"),
    ],
)
def test_config_file_errors(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(content)
    with pytest.raises(MongarsError, match=match):
        read_config_file(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(MongarsError, match="not found"):
        read_config_file(tmp_path / "absent.yaml")
