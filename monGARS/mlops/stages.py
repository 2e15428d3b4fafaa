"""One entry point per pipeline stage: what a KFP component body calls, with plain paths.

Each ``run_*`` builds the stage's typed config from the component's parameters, runs the stage and
returns the flat metadata the component copies onto its artifact. ``validate_parameters`` builds
every stage's config from the pipeline parameters the same way, so a bad value is refused before
anything runs, with every problem of every stage reported at once.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monGARS.mlops.configs import load_config
from monGARS.mlops.errors import ConfigError, MongarsError
from monGARS.mlops.shared_cache import default_checkpoint_root, resolve_model_dir
from monGARS.mlops.tiny_model import TINY_MODEL_NAME

STAGE_ORDER = ("build_datasets", "sft", "llm2vec", "raft", "export", "report")

# Pipeline parameters each component folds into its stage config (before the stage's own
# ``*_config`` dict, which overrides them). Kept in one place for components and validation.
DATASETS_PARAMETERS = {"languages": "languages", "val_split": "val_split", "split_seed": "seed"}
SFT_PARAMETERS = (
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "epochs",
    "max_steps",
    "batch_size",
    "learning_rate",
    "vram_budget_mb",
    "seed",
    "checkpoint_root",
)
EXPORT_PARAMETERS = ("export_method", "quant_types", "export_cmd")


# The embedded default is a 2-layer model: these settings make `make run` train visibly in
# minutes on 2 CPU cores. Cluster runs use the stage configs' own (production) defaults.
def _tiny_preset() -> dict[str, Any]:
    from monGARS.mlops.training.llm2vec_config import TINY_LLM2VEC_OVERRIDES
    from monGARS.mlops.training.raft_config import TINY_RAFT_OVERRIDES
    from monGARS.mlops.training.sft_config import TINY_SFT_OVERRIDES

    sft_top = {k: v for k, v in TINY_SFT_OVERRIDES.items() if k in SFT_PARAMETERS}
    sft_rest = {k: v for k, v in TINY_SFT_OVERRIDES.items() if k not in SFT_PARAMETERS}
    return {
        # Two modules (training code vs the rest) keep the local fan-out small.
        "datasets_config": {"module_map": ["*training*=training", "*=platform"]},
        **sft_top,
        "sft_config": sft_rest,
        "llm2vec_config": dict(TINY_LLM2VEC_OVERRIDES),
        "raft_config": dict(TINY_RAFT_OVERRIDES),
        # A random-weight model quantises worse than a trained one: on the tiny model Q4_K_M
        # logits reach cosine ~0.83-0.94 with the f32 reference depending on the tokenizer's
        # corpus, so its bound is looser here; cluster runs keep the export stage's default.
        "export_config": {"n_ctx": 512, "kquant_min_cosine": 0.7},
    }


def _merge_preset(preset: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(preset)
    for key, value in parameters.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def resolve_local_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Pipeline parameters for a local run: the tiny model and its preset unless told otherwise."""
    resolved = dict(parameters)
    resolved.setdefault("base_model", TINY_MODEL_NAME)
    if resolved["base_model"] == TINY_MODEL_NAME:
        resolved = _merge_preset(_tiny_preset(), resolved)
    return resolved


def sft_config_values(parameters: Mapping[str, Any]) -> dict[str, Any]:
    values = {name: parameters[name] for name in SFT_PARAMETERS if name in parameters}
    values.update(parameters.get("sft_config") or {})
    return values


def datasets_config_values(parameters: Mapping[str, Any]) -> dict[str, Any]:
    values = {
        field: parameters[name] for name, field in DATASETS_PARAMETERS.items() if name in parameters
    }
    values.update(parameters.get("datasets_config") or {})
    return values


def llm2vec_config_values(parameters: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {"seed": parameters["seed"]} if "seed" in parameters else {}
    values.update(parameters.get("llm2vec_config") or {})
    for key in ("mntp_config", "simcse_config"):
        if parameters.get(key):
            values[key] = parameters[key]
    return values


def raft_config_values(parameters: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {"seed": parameters["seed"]} if "seed" in parameters else {}
    values.update(parameters.get("raft_config") or {})
    return values


def export_config_values(parameters: Mapping[str, Any]) -> dict[str, Any]:
    values = {name: parameters[name] for name in EXPORT_PARAMETERS if name in parameters}
    values.update(parameters.get("export_config") or {})
    return values


def _reaches(last_stage: str, stage: str) -> bool:
    return STAGE_ORDER.index(stage) <= STAGE_ORDER.index(last_stage)


def _datasets_config(parameters: Mapping[str, Any]) -> Any:
    from monGARS.mlops.datasets.config import load_datasets_config

    return load_datasets_config(datasets_config_values(parameters))


def _sft_config(parameters: Mapping[str, Any]) -> Any:
    from monGARS.mlops.training.sft_config import SFTConfig

    return load_config(SFTConfig, sft_config_values(parameters))


def _llm2vec_config(parameters: Mapping[str, Any]) -> Any:
    from monGARS.mlops.training.llm2vec_upstream import load_llm2vec_config

    return load_llm2vec_config(llm2vec_config_values(parameters))


def _raft_config(parameters: Mapping[str, Any]) -> Any:
    from monGARS.mlops.training.raft import RaftConfig

    return load_config(RaftConfig, raft_config_values(parameters))


def _export_config(parameters: Mapping[str, Any]) -> Any:
    from monGARS.mlops.export.config import ExportConfig

    return load_config(ExportConfig, export_config_values(parameters))


def _base_model(parameters: Mapping[str, Any]) -> None:
    """A local base model must be a readable model folder before anything runs."""
    from monGARS.mlops.base_model import check_model_folder, describe_spec

    spec = parameters.get("base_model", "")
    if not isinstance(spec, str) or not spec:
        raise MongarsError("base_model: give a hub id, a model folder, a gs:// URI or 'tiny'")
    if describe_spec(spec) == "local":
        folder = Path(spec).expanduser()
        if not folder.exists():
            raise MongarsError(f"base_model: {spec} does not exist; give a model folder or hub id")
        check_model_folder(folder, "base_model")


def validate_parameters(parameters: Mapping[str, Any], last_stage: str = "report") -> None:
    """Build every stage config the run will use; one ``ConfigError`` lists all problems."""
    checks = [("build_datasets", _datasets_config)]
    if _reaches(last_stage, "sft"):
        checks.append(("fetch_base_model", _base_model))
    if _reaches(last_stage, "sft"):
        checks.append(("sft", _sft_config))
    if _reaches(last_stage, "llm2vec"):
        checks.append(("llm2vec", _llm2vec_config))
    if _reaches(last_stage, "raft") and parameters.get("raft"):
        checks.append(("raft", _raft_config))
    if _reaches(last_stage, "export"):
        checks.append(("export", _export_config))
    problems: list[str] = []
    for stage, build in checks:
        try:
            build(parameters)
        except ConfigError as error:
            problems.extend(f"{stage}.{problem}" for problem in error.problems)
        except MongarsError as error:
            problems.append(f"{stage}: {error}")
    if problems:
        raise ConfigError("pipeline", problems)


def run_fetch_base_model(spec: str, out_dir: str) -> dict[str, Any]:
    from monGARS.mlops.base_model import fetch_base_model

    return fetch_base_model(spec, out_dir)


def run_build_datasets(
    values: Mapping[str, Any], out_dir: str, summary_path: str
) -> tuple[list[str], dict[str, Any]]:
    from monGARS.mlops.atomic import write_text
    from monGARS.mlops.datasets.build import build_datasets
    from monGARS.mlops.datasets.config import load_datasets_config

    result = build_datasets(load_datasets_config(values), Path(out_dir))
    write_text(summary_path, result.summary_markdown)
    return list(result.modules), dict(result.metadata)


def run_sft(
    values: Mapping[str, Any],
    base_model_dir: str,
    datasets_dir: str,
    module: str,
    out_dir: str,
    loss_curve_html: str,
    base_model_name: str | None = None,
) -> dict[str, Any]:
    from monGARS.mlops.training.sft import train_sft
    from monGARS.mlops.training.sft_config import load_sft_config

    metadata = train_sft(
        load_sft_config(_with_checkpoint_default(values)),
        resolve_model_dir(base_model_dir),
        Path(datasets_dir),
        module,
        Path(out_dir),
        base_model_name=base_model_name,
    )
    _copy_if_exists(Path(out_dir) / "loss_curve.html", loss_curve_html)
    return metadata


def run_llm2vec(
    values: Mapping[str, Any],
    mntp_config: Mapping[str, Any],
    simcse_config: Mapping[str, Any],
    base_model_dir: str,
    sft_dir: str,
    datasets_dir: str,
    module: str,
    out_dir: str,
) -> dict[str, Any]:
    from monGARS.mlops.training.llm2vec import train_llm2vec
    from monGARS.mlops.training.llm2vec_upstream import load_llm2vec_config

    merged = dict(values)
    if mntp_config:
        merged["mntp_config"] = dict(mntp_config)
    if simcse_config:
        merged["simcse_config"] = dict(simcse_config)
    config = load_llm2vec_config(merged)
    return train_llm2vec(
        config,
        resolve_model_dir(base_model_dir),
        Path(sft_dir),
        Path(datasets_dir),
        module,
        Path(out_dir),
    )


def run_raft(
    values: Mapping[str, Any],
    base_model_dir: str,
    sft_dir: str,
    encoder_dir: str,
    datasets_dir: str,
    module: str,
    out_dir: str,
    base_model_name: str | None = None,
    enabled: bool = True,
) -> dict[str, Any]:
    """Train RAFT on top of the SFT adapter; when ``enabled`` is false, pass that adapter on.

    The pass-through keeps one DAG for both settings (no condition, no ``dsl.OneOf``), so the
    pipeline runs on older KFP backends; it copies only the adapter, never the base weights.
    """
    if not enabled:
        from monGARS.mlops.atomic import atomic_dir

        with atomic_dir(out_dir) as scratch:
            shutil.copytree(sft_dir, scratch, dirs_exist_ok=True)
        return {"module": module, "raft": "off", "adapter_from": "sft"}

    from monGARS.mlops.training.raft import RaftConfig, train_raft

    config = load_config(RaftConfig, _with_checkpoint_default(values))
    return train_raft(
        config,
        resolve_model_dir(base_model_dir),
        Path(sft_dir),
        Path(encoder_dir) if encoder_dir else None,
        Path(datasets_dir),
        module,
        Path(out_dir),
        base_model_name=base_model_name,
    )


def run_merge_adapter(
    base_model_dir: str, adapter_dir: str, module: str, out_dir: str
) -> dict[str, Any]:
    from monGARS.mlops.training.modeling import merge_adapter_to_folder

    metadata = merge_adapter_to_folder(resolve_model_dir(base_model_dir), adapter_dir, out_dir)
    return {"module": module, **metadata}


def run_export(
    values: Mapping[str, Any],
    chat_model_dir: str,
    encoder_dir: str | None,
    module: str,
    out_dir: str,
) -> dict[str, Any]:
    from monGARS.mlops.export.config import ExportConfig
    from monGARS.mlops.export.export import export_module

    config = load_config(ExportConfig, dict(values))
    return export_module(
        config,
        Path(chat_model_dir),
        None,
        Path(encoder_dir) if encoder_dir else None,
        module,
        Path(out_dir),
    )


def run_report(
    run_name: str,
    datasets_dir: str,
    sft_dirs: Sequence[str],
    encoder_dirs: Sequence[str],
    gguf_dirs: Sequence[str],
    html_path: str,
) -> tuple[str, dict[str, float]]:
    from monGARS.mlops.report import write_report

    return write_report(run_name, datasets_dir, sft_dirs, encoder_dirs, gguf_dirs, html_path)


def _with_checkpoint_default(values: Mapping[str, Any]) -> dict[str, Any]:
    """An empty ``checkpoint_root`` means the shared cache volume, so retries resume by default."""
    resolved = dict(values)
    if not resolved.get("checkpoint_root"):
        resolved["checkpoint_root"] = default_checkpoint_root()
    return resolved


def _copy_if_exists(source: Path, target: str) -> None:
    if source.is_file():
        from monGARS.mlops.atomic import atomic_file

        with atomic_file(target) as partial:
            shutil.copyfile(source, partial)
