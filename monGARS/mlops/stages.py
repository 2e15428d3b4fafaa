"""One entry point per pipeline stage: what a KFP component body calls, with plain paths.

A component hands ``run_*`` every raw parameter it received; ``run_*`` builds the stage's typed
config from them with the stage's ``*_config`` builder (``parameters.stage_values`` underneath),
runs the stage and returns the flat metadata the component copies onto its artifact.
``validate_parameters`` calls the very same builders on the pipeline parameters, so a bad value is
refused before anything runs, with every problem of every stage reported at once.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monGARS.mlops.configs import load_config
from monGARS.mlops.errors import ConfigError, MongarsError
from monGARS.mlops.parameters import stage_parameters, stage_values
from monGARS.mlops.shared_cache import default_checkpoint_root, resolve_model_dir
from monGARS.mlops.tiny_model import TINY_MODEL_NAME

STAGE_ORDER = ("build_datasets", "sft", "llm2vec", "raft", "export", "report")


# The embedded default is a 2-layer model: these settings make `make run` train visibly in
# minutes on 2 CPU cores. Cluster runs use the stage configs' own (production) defaults.
def _tiny_preset() -> dict[str, Any]:
    from monGARS.mlops.evaluate.config import TINY_EVALUATE_OVERRIDES
    from monGARS.mlops.training.llm2vec.config import TINY_LLM2VEC_OVERRIDES
    from monGARS.mlops.training.raft.config import TINY_RAFT_OVERRIDES
    from monGARS.mlops.training.sft.config import TINY_SFT_OVERRIDES

    # SFT fields that have a flat pipeline parameter go there; the rest into sft_config.
    flat = {field: p.name for p in stage_parameters("sft") for stage, field in p.sets if field}
    sft_top = {flat[k]: v for k, v in TINY_SFT_OVERRIDES.items() if k in flat}
    sft_rest = {k: v for k, v in TINY_SFT_OVERRIDES.items() if k not in flat}
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
        **_flat_preset("evaluate", TINY_EVALUATE_OVERRIDES),
        # After 30 steps the 2-layer model's greedy answers are runs of backticks (the code-mined
        # answers' most frequent token), never French prose, while its NLL falls well below the
        # base's: the French share is measured and reported, but only gated on real models.
        "promote_min_french_share": 0.0,
    }


def _flat_preset(stage: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A stage preset as pipeline parameters: fields with a flat parameter go there (so a user's
    flag still wins over the preset), the rest into the stage's ``*_config`` dict."""
    flat = {f: p.name for p in stage_parameters(stage) for s, f in p.sets if s == stage and f}
    (config_parameter,) = [p.name for p in stage_parameters(stage) if p.overrides == stage]
    rest = {k: v for k, v in overrides.items() if k not in flat}
    return {flat[k]: v for k, v in overrides.items() if k in flat} | (
        {config_parameter: rest} if rest else {}
    )


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
        preset = _tiny_preset()
        upstream = [parameters.get(key) for key in ("mntp_config", "simcse_config")]
        if any(upstream):
            # What the user's upstream llm2vec configs set beats the preset's small values.
            from monGARS.mlops.training.llm2vec.upstream import resolve_upstream

            mapped, _ = resolve_upstream(*upstream)
            preset["llm2vec_config"] = {
                k: v for k, v in preset["llm2vec_config"].items() if k not in mapped
            }
        resolved = _merge_preset(preset, resolved)
    return resolved


def _reaches(last_stage: str, stage: str) -> bool:
    return STAGE_ORDER.index(stage) <= STAGE_ORDER.index(last_stage)


# One builder per stage config, from raw pipeline parameters: what the component runs with and
# what validation checks are the same object.
def datasets_config(parameters: Mapping[str, Any]) -> Any:
    from monGARS.mlops.datasets.config import load_datasets_config

    return load_datasets_config(stage_values("build_datasets", parameters))


def sft_config(parameters: Mapping[str, Any]) -> Any:
    from monGARS.mlops.training.sft.config import SFTConfig

    return load_config(SFTConfig, _with_checkpoint_default(stage_values("sft", parameters)))


def llm2vec_config(parameters: Mapping[str, Any]) -> Any:
    from monGARS.mlops.training.llm2vec.upstream import load_llm2vec_config

    return load_llm2vec_config(_with_checkpoint_default(stage_values("llm2vec", parameters)))


def raft_config(parameters: Mapping[str, Any]) -> Any:
    from monGARS.mlops.training.raft.config import RaftConfig

    return load_config(RaftConfig, _with_checkpoint_default(stage_values("raft", parameters)))


def export_config(parameters: Mapping[str, Any]) -> Any:
    from monGARS.mlops.export.config import ExportConfig

    return load_config(ExportConfig, stage_values("export", parameters))


def evaluate_config(parameters: Mapping[str, Any]) -> Any:
    from monGARS.mlops.evaluate.config import EvaluateConfig

    return load_config(EvaluateConfig, stage_values("evaluate", parameters))


def promotion_config(parameters: Mapping[str, Any]) -> Any:
    from monGARS.mlops.evaluate.config import PromotionConfig

    return load_config(PromotionConfig, stage_values("promote", parameters))


def _base_model(parameters: Mapping[str, Any]) -> None:
    from monGARS.mlops.base_model import check_base_model_spec

    check_base_model_spec(parameters.get("base_model", ""))


def validate_parameters(parameters: Mapping[str, Any], last_stage: str = "report") -> None:
    """Build every stage config the run will use; one ``ConfigError`` lists all problems."""
    checks: list[tuple[str, Callable[[Mapping[str, Any]], Any]]] = [
        ("build_datasets", datasets_config)
    ]
    if _reaches(last_stage, "sft"):
        checks += [("fetch_base_model", _base_model), ("sft", sft_config)]
    if _reaches(last_stage, "llm2vec"):
        checks.append(("llm2vec", llm2vec_config))
    if _reaches(last_stage, "raft") and parameters.get("raft"):
        checks.append(("raft", raft_config))
    if _reaches(last_stage, "export"):
        checks += [
            ("export", export_config),
            ("evaluate", evaluate_config),
            ("promote", promotion_config),
        ]
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


def run_fetch_base_model(spec: str, out_dir: str, revision: str = "") -> dict[str, Any]:
    """Materialise the base model; a hub id at the revision ``resolve_sources`` found."""
    from monGARS.mlops.base_model import fetch_base_model, pin_revision

    metadata = fetch_base_model(pin_revision(spec, revision), out_dir)
    metadata["base_model"] = spec
    metadata["resolved_revision"] = revision
    return metadata


def run_resolve_sources(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Resolve the run's outside inputs (model, dataset sources, mined tree) into revisions."""
    from monGARS.mlops.sources import resolve_sources

    return resolve_sources(parameters)


def run_build_datasets(
    parameters: Mapping[str, Any], out_dir: str, summary_path: str
) -> tuple[list[str], dict[str, Any]]:
    from monGARS.mlops.atomic import write_text
    from monGARS.mlops.datasets.build import build_datasets

    result = build_datasets(datasets_config(parameters), Path(out_dir))
    write_text(summary_path, result.summary_markdown)
    metadata = dict(result.metadata)
    # What resolve_sources found: recorded for lineage (it is in the cache key already).
    revisions = parameters.get("source_revisions")
    if revisions:
        metadata["source_revisions"] = dict(revisions)
    return list(result.modules), metadata


def run_sft(
    parameters: Mapping[str, Any],
    base_model_dir: str,
    datasets_dir: str,
    module: str,
    out_dir: str,
    loss_curve_html: str,
    base_model_name: str | None = None,
) -> dict[str, Any]:
    from monGARS.mlops.training.sft.train import train_sft

    metadata = train_sft(
        sft_config(parameters),
        resolve_model_dir(base_model_dir),
        Path(datasets_dir),
        module,
        Path(out_dir),
        base_model_name=base_model_name,
    )
    _copy_if_exists(Path(out_dir) / "loss_curve.html", loss_curve_html)
    return metadata


def run_llm2vec(
    parameters: Mapping[str, Any],
    base_model_dir: str,
    sft_dir: str,
    datasets_dir: str,
    module: str,
    out_dir: str,
) -> dict[str, Any]:
    from monGARS.mlops.training.llm2vec.train import train_llm2vec

    return train_llm2vec(
        llm2vec_config(parameters),
        resolve_model_dir(base_model_dir),
        Path(sft_dir),
        Path(datasets_dir),
        module,
        Path(out_dir),
    )


def run_raft(
    parameters: Mapping[str, Any],
    base_model_dir: str,
    sft_dir: str,
    encoder_dir: str,
    datasets_dir: str,
    module: str,
    out_dir: str,
    base_model_name: str | None = None,
) -> tuple[dict[str, Any], str]:
    """Train RAFT on top of the SFT adapter; return (metadata, reference for merge_adapter).

    The task runs only when ``raft`` is on (a condition in the pipeline): merge_adapter, outside
    the condition, gets the adapter through the shared cache volume by the returned reference
    (monGARS.mlops.handoff says why).
    """
    from monGARS.mlops.handoff import publish_to_cache
    from monGARS.mlops.training.raft.train import train_raft

    metadata = train_raft(
        raft_config(parameters),
        resolve_model_dir(base_model_dir),
        Path(sft_dir),
        Path(encoder_dir) if encoder_dir else None,
        Path(datasets_dir),
        module,
        Path(out_dir),
        base_model_name=base_model_name,
    )
    return metadata, publish_to_cache(Path(out_dir), f"raft-{module}")


def run_merge_adapter(
    base_model_dir: str, sft_dir: str, module: str, out_dir: str, raft_adapter: str = ""
) -> dict[str, Any]:
    """Merge the RAFT adapter when raft ran (``raft_adapter`` names it), else the SFT adapter."""
    from monGARS.mlops.handoff import resolve_from_cache
    from monGARS.mlops.modeling import merge_adapter_to_folder

    adapter_dir = resolve_from_cache(raft_adapter, "raft adapter") if raft_adapter else sft_dir
    metadata = merge_adapter_to_folder(resolve_model_dir(base_model_dir), adapter_dir, out_dir)
    return {"module": module, "adapter_from": "raft" if raft_adapter else "sft", **metadata}


def run_export(
    parameters: Mapping[str, Any],
    chat_model_dir: str,
    encoder_dir: str | None,
    module: str,
    out_dir: str,
) -> dict[str, Any]:
    from monGARS.mlops.export.export import export_module

    return export_module(
        export_config(parameters),
        Path(chat_model_dir),
        None,
        Path(encoder_dir) if encoder_dir else None,
        module,
        Path(out_dir),
    )


def run_evaluate(
    parameters: Mapping[str, Any],
    gguf_dir: str,
    chat_model_dir: str,
    base_model_dir: str,
    datasets_dir: str,
    module: str,
    out_dir: str,
) -> dict[str, Any]:
    from monGARS.mlops.evaluate.run import evaluate_module

    return evaluate_module(
        evaluate_config(parameters),
        gguf_dir,
        chat_model_dir,
        base_model_dir,
        datasets_dir,
        module,
        out_dir,
    )


def run_promote(
    parameters: Mapping[str, Any],
    evaluation_dirs: Sequence[str],
    gguf_dirs: Sequence[str],
    lineage: Mapping[str, Any],
    out_dir: str,
) -> dict[str, Any]:
    from monGARS.mlops.evaluate.promote import promote_modules

    return promote_modules(
        promotion_config(parameters), evaluation_dirs, gguf_dirs, lineage, out_dir
    )


def run_report(
    run_name: str,
    datasets_summary: str,
    summaries: Sequence[str],
    html_path: str,
    report_uri: str = "",
    promotion_dir: str | None = None,
) -> tuple[str, dict[str, float]]:
    """The report from the stages' small summaries (never their large artifacts)."""
    from monGARS.mlops.report import write_report

    return write_report(run_name, datasets_summary, summaries, html_path, report_uri, promotion_dir)


def run_stage_summary(
    stage: str, module: str, artifact_dir: str, artifact_uri: str, out_path: str
) -> None:
    """What a stage hands the report: its small JSON files, file names and artifact URI."""
    from monGARS.mlops.summaries import write_stage_summary

    write_stage_summary(stage, module, artifact_dir, artifact_uri, out_path)


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
