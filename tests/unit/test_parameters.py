"""One parameter, one place: the declaration against the stage configs, the pipeline, the
components and the command line; and the component bodies' fold, through ``.python_func``."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from monGARS.mlops.parameters import (
    BY_NAME,
    PARAMETERS,
    STAGES,
    defaults,
    stage_parameters,
    stage_values,
)
from monGARS.pipelines.compile import COMPILED_PIPELINE

# Arguments a stage's component takes besides its stage parameters (and its artifacts).
TASK_ARGUMENTS = {
    "build_datasets": {"source_revisions"},  # from resolve_sources: the sources' cache key
    "export": {"module"},
    "raft": {"module"},
    "promote": {"run_id", "job_name", "image"},  # lineage, from KFP placeholders and the tag
}
LOADER_KEYS = {"llm2vec": {"mntp_config", "simcse_config"}}  # consumed by load_llm2vec_config
IR_TYPES = {
    str: "STRING",
    int: "NUMBER_INTEGER",
    float: "NUMBER_DOUBLE",
    bool: "BOOLEAN",
    list: "LIST",
    dict: "STRUCT",
}


def _config_class(stage: str) -> type:
    from monGARS.mlops.datasets.config import DatasetsConfig
    from monGARS.mlops.evaluate.config import EvaluateConfig, PromotionConfig
    from monGARS.mlops.export.config import ExportConfig
    from monGARS.mlops.training.llm2vec.config import Llm2VecConfig
    from monGARS.mlops.training.raft.config import RaftConfig
    from monGARS.mlops.training.sft.config import SFTConfig

    return {
        "build_datasets": DatasetsConfig,
        "sft": SFTConfig,
        "llm2vec": Llm2VecConfig,
        "raft": RaftConfig,
        "export": ExportConfig,
        "evaluate": EvaluateConfig,
        "promote": PromotionConfig,
    }[stage]


def _field_default(cls: type, name: str) -> Any:
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def test_every_default_is_the_stage_configs_own() -> None:
    """The check that would have caught `epochs` = 1.0 in the pipeline and 3.0 in SFTConfig."""
    checked = 0
    for parameter in PARAMETERS:
        for stage, field in parameter.sets:
            if field in LOADER_KEYS.get(stage, set()):
                continue
            assert _field_default(_config_class(stage), field) == parameter.default, (
                f"{parameter.name}: declared default {parameter.default!r} differs from "
                f"{_config_class(stage).__name__}.{field}"
            )
            checked += 1
    assert checked >= 15


def test_the_compiled_pipeline_declares_exactly_the_parameters() -> None:
    spec = next(yaml.safe_load_all(COMPILED_PIPELINE.read_text(encoding="utf-8")))
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert set(inputs) == set(BY_NAME)
    for name, definition in inputs.items():
        parameter = BY_NAME[name]
        assert definition["parameterType"] == IR_TYPES[parameter.type], name
        default = definition.get("defaultValue")
        if parameter.type is int and isinstance(default, float):
            default = int(default)
        assert default == parameter.default, name


@pytest.mark.parametrize("stage", STAGES)
def test_each_component_takes_exactly_its_stages_parameters(stage: str) -> None:
    import importlib

    module = importlib.import_module(f"monGARS.components.{stage}")
    component = getattr(module, stage)
    arguments = {
        name
        for name, argument in inspect.signature(component.python_func).parameters.items()
        if "dsl" not in str(argument.annotation) and "Input" not in str(argument.annotation)
    }
    arguments -= {name for name in arguments if name in {"adapter", "encoder", "gguf"}}
    expected = {p.name for p in stage_parameters(stage)} | TASK_ARGUMENTS.get(stage, {"module"})
    assert arguments == expected


def test_flat_parameters_fold_by_field_and_the_overrides_dict_wins() -> None:
    raw = {
        "split_seed": 7,
        "val_split": 0.2,
        "datasets_config": {"val_split": 0.3},
        "lora_r": 4,  # another stage's: ignored
        "datasets": object(),  # an artifact: ignored
    }
    assert stage_values("build_datasets", raw) == {"seed": 7, "val_split": 0.3}
    llm2vec = stage_values("llm2vec", {"seed": 1, "mntp_config": {}, "simcse_config": {"a": 1}})
    assert llm2vec == {"seed": 1, "simcse_config": {"a": 1}}
    with pytest.raises(ValueError, match="stage must be one of"):
        stage_values("report", raw)


def test_defaults_are_fresh_copies() -> None:
    first = defaults()
    first["gpu_tolerations"].append({"key": "x"})
    first["languages"].append("en")
    assert defaults()["gpu_tolerations"] == BY_NAME["gpu_tolerations"].default
    assert defaults()["languages"] == ["fr"]


def test_every_flag_reaches_its_parameter(tmp_path: Path) -> None:
    from monGARS.cli import build_parser, parameters_from_args

    values = {
        str: "x",
        int: "3",
        float: "0.5",
        list: "fr,en",
    }
    mntp = tmp_path / "mntp.json"
    mntp.write_text('{"mask_token_type": "blank"}')
    argv = ["run"]
    expected: dict[str, Any] = {}
    for parameter in PARAMETERS:
        if not parameter.flag:
            continue
        if parameter.type is dict:
            argv += [parameter.option, str(mntp)]
            expected[parameter.name] = {"mask_token_type": "blank"}
        else:
            argv += [parameter.option, values[parameter.type]]
            expected[parameter.name] = {"x": "x", "3": 3, "0.5": 0.5, "fr,en": ["fr", "en"]}[
                values[parameter.type]
            ]
    parsed = parameters_from_args(build_parser().parse_args(argv))
    assert {k: v for k, v in parsed.items() if k != "run_name"} == expected


class _Artifact:
    """What a component body reads of an artifact: a path, metadata, and metrics logging."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.uri = str(path)
        self.metadata: dict[str, Any] = {}
        self.logged: dict[str, float] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.logged[name] = value


def _call_python_func(component: Any, **arguments: Any) -> Any:
    return component.python_func(**arguments)


def test_sft_body_folds_its_parameters_into_the_validated_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the component body, without kfp.local: a bad flat value and a bad overrides key
    are both refused by the stage config, in one line, before any model is loaded."""
    from monGARS.components.sft import sft

    stage = {p.name: p.default for p in stage_parameters("sft")}
    stage.update(lora_r=0, sft_config={"warmup_ratio": 2.0})
    with pytest.raises(SystemExit) as stopped:
        _call_python_func(
            sft,
            base_model=_Artifact(tmp_path / "base"),
            datasets=_Artifact(tmp_path / "datasets"),
            module="platform",
            adapter=_Artifact(tmp_path / "adapter"),
            metrics=_Artifact(tmp_path / "metrics"),
            loss_curve=_Artifact(tmp_path / "loss.html"),
            stage_summary=_Artifact(tmp_path / "summary.json"),
            **stage,
        )
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: sft: ") and len(err.splitlines()) == 1
    assert "lora_r" in err and "warmup_ratio" in err
    assert not (tmp_path / "adapter").exists()


def test_build_datasets_body_runs_the_stage_with_its_folded_config(tmp_path: Path) -> None:
    from monGARS.components.build_datasets import build_datasets

    datasets = _Artifact(tmp_path / "datasets")
    modules = _call_python_func(
        build_datasets,
        datasets_config={"module_map": ["*training*=training", "*=platform"], "progress": False},
        languages=["fr"],
        val_split=0.25,
        split_seed=11,
        source_revisions={"sample_fr_instruction": "0123abcd"},
        datasets=datasets,
        summary=_Artifact(tmp_path / "summary.md"),
        stage_summary=_Artifact(tmp_path / "stage_summary.json"),
    )
    assert modules == ["platform", "training"]
    assert datasets.metadata["modules"] == "platform,training"
    assert json.loads(datasets.metadata["source_revisions"]) == {
        "sample_fr_instruction": "0123abcd"
    }
    small = json.loads((tmp_path / "stage_summary.json").read_text())
    assert small["documents"]["modules.json"] == modules and small["uri"] == datasets.uri
    summary = json.loads((tmp_path / "datasets" / "summary.json").read_text())
    assert summary["config"]["seed"] == 11 and summary["config"]["val_split"] == 0.25


def test_upstream_llm2vec_configs_beat_the_tiny_preset() -> None:
    from monGARS.mlops.stages import llm2vec_config, resolve_local_parameters

    plain = llm2vec_config(resolve_local_parameters({}))
    given = resolve_local_parameters({"mntp_config": {"max_steps": 3}})
    assert llm2vec_config(given).mntp_steps == 3 != plain.mntp_steps
    assert llm2vec_config(given).simcse_steps == plain.simcse_steps  # the preset elsewhere
