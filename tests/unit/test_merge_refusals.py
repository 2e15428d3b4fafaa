"""One merge for the merge task and export: both refuse weights stored quantised, before loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.export.merge import merge_chat_model
from monGARS.mlops.modeling import merge_adapter_to_folder


def _quantised_base(folder: Path) -> Path:
    folder.mkdir()
    config = {"model_type": "llama", "quantization_config": {"quant_method": "bitsandbytes"}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"0" * 16)
    return folder


def _stage_output(folder: Path) -> Path:
    (folder / "adapter").mkdir(parents=True)
    (folder / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 4}))
    return folder


def test_merge_task_refuses_a_quantised_base(tmp_path: Path) -> None:
    base = _quantised_base(tmp_path / "base")
    with pytest.raises(MongarsError, match="stored quantised \\(bitsandbytes\\)"):
        merge_adapter_to_folder(base, _stage_output(tmp_path / "sft"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_merge_refuses_a_quantised_base_the_same_way(tmp_path: Path) -> None:
    base = _quantised_base(tmp_path / "base")
    with pytest.raises(MongarsError, match="stored quantised \\(bitsandbytes\\)"):
        merge_chat_model(base, _stage_output(tmp_path / "sft"), tmp_path / "scratch")
    with pytest.raises(MongarsError, match="stored quantised"):
        merge_chat_model(base, None, tmp_path / "scratch")
