"""Safe names and the run state file."""

from __future__ import annotations

from pathlib import Path

import pytest

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.names import check_safe_name, to_identifier
from monGARS.mlops.state import load_state, save_state


@pytest.mark.parametrize(
    "bad", ["../x", "a/b", "x;rm -rf", "$(id)", "", ".hidden", "a b", "..", "x" * 65]
)
def test_unsafe_names_refused(bad: str) -> None:
    with pytest.raises(MongarsError, match="run_id"):
        check_safe_name("run_id", bad)


def test_identifiers() -> None:
    assert to_identifier("monGARS/mlops/training") == "mongars_mlops_training"
    assert to_identifier("3d-models") == "m_3d_models"


def test_state_round_trip(tmp_path: Path) -> None:
    save_state(tmp_path, "demo", {"status": "failed"}, None)
    save_state(tmp_path, "demo", {"status": "succeeded"}, {"datasets": "/d", "modules": {"m": {}}})
    state = load_state(tmp_path)
    assert [entry["status"] for entry in state["history"]] == ["failed", "succeeded"]
    assert state["datasets"] == "/d" and state["modules"]["m"]["train_count"] == 0


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[]", b'{"version": 99}'])
def test_corrupted_state_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "state.json").write_bytes(content)
    with pytest.raises(MongarsError, match="rebuild it with --build-datasets"):
        load_state(tmp_path)


def test_a_state_file_of_the_current_format_still_loads(tmp_path: Path) -> None:
    """Users' runs/<id>/state.json files are version 1: a format change must be deliberate."""
    (tmp_path / "state.json").write_text(
        '{"version": 1, "run_id": "demo", "history": [{"status": "failed"}]}', encoding="utf-8"
    )
    assert load_state(tmp_path)["history"] == [{"status": "failed"}]
    save_state(tmp_path, "demo", {"status": "succeeded"}, None)
    assert load_state(tmp_path)["version"] == 1


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_other_state_versions_are_refused(tmp_path: Path, version: object) -> None:
    import json

    (tmp_path / "state.json").write_text(json.dumps({"version": version}), encoding="utf-8")
    with pytest.raises(MongarsError, match="not a monGARS state file"):
        load_state(tmp_path)


def test_unreadable_state_error_says_why(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_bytes(b"{not json")
    with pytest.raises(MongarsError, match=r"cannot be read \(Expecting property name"):
        load_state(tmp_path)
