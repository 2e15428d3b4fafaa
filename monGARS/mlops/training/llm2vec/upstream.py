"""Upstream LLM2Vec JSON training configs mapped onto :class:`Llm2VecConfig`.

Users arrive with the ``train_configs/mntp/*.json``, ``train_configs/simcse/*.json`` and
``train_configs/supervised/*.json`` files of the LLM2Vec repository. The keys those files share
with this stage map onto its fields; keys upstream knows but this stage has no use for (the model
and data come from the pipeline, outputs are the stage's own) are reported as ignored with the
reason; any other key is reported as unknown. Reports go into the stage metadata and a logged
warning: nothing is silently dropped.

Precedence: stage defaults < MNTP file < SimCSE file < supervised file (for the few shared keys) <
keys given directly in the stage config.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from monGARS.mlops.configs import load_config
from monGARS.mlops.errors import ConfigError, MongarsError
from monGARS.mlops.training.llm2vec.config import Llm2VecConfig

LOG = logging.getLogger(__name__)

Kind = Literal["mntp", "simcse", "supervised"]
KINDS: tuple[Kind, ...] = ("mntp", "simcse", "supervised")

_STEP_KEYS = ("max_steps", "stop_after_n_steps")

# Keys read by both scripts and prefixed per stage here.
_PER_STAGE = {
    "learning_rate": "learning_rate",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "max_seq_length": "max_seq_length",
    "lora_r": "lora_r",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
}
# Keys one script reads that map onto an unprefixed field.
_STAGE_ONLY: dict[Kind, dict[str, str]] = {
    "mntp": {
        "mlm_probability": "mlm_probability",
        "mask_token_type": "mask_token_type",
        "data_collator_type": "data_collator_type",
    },
    "simcse": {
        "simcse_dropout": "simcse_dropout",
        "pooling_mode": "pooling_mode",
        "loss_scale": "temperature",
    },
    "supervised": {
        "pooling_mode": "pooling_mode",
        "loss_scale": "supervised_temperature",
    },
}
# Keys both scripts read that map onto one shared field.
_SHARED = {
    "seed": "seed",
    "torch_dtype": "dtype",
    "attn_implementation": "attn_implementation",
    "gradient_checkpointing": "gradient_checkpointing",
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
}

_MODEL = "the pipeline supplies the model (base model + the module's SFT adapter)"
_DATA = "the pipeline supplies the training text (datasets artifact, text_sources)"
_OUTPUT = "the stage writes its own encoder/, metrics.json and metadata"
_RUNTIME = "training loop detail this stage fixes (single process, constant LR, AdamW)"
_EVAL = "the stage evaluates retrieval on corpora/retrieval/val.jsonl instead"

# Keys of run_mntp.py / run_simcse.py / HF TrainingArguments that have no meaning here.
IGNORED_KEYS: dict[str, str] = {
    **dict.fromkeys(
        [
            "model_name_or_path",
            "peft_model_name_or_path",
            "config_name",
            "config_overrides",
            "tokenizer_name",
            "model_type",
            "model_revision",
            "cache_dir",
            "use_fast_tokenizer",
            "token",
            "use_auth_token",
            "trust_remote_code",
            "low_cpu_mem_usage",
        ],
        _MODEL,
    ),
    **dict.fromkeys(
        [
            "dataset_name",
            "dataset_config_name",
            "dataset_file_path",
            "train_file",
            "validation_file",
            "max_train_samples",
            "max_eval_samples",
            "streaming",
            "overwrite_cache",
            "validation_split_percentage",
            "preprocessing_num_workers",
            "line_by_line",
            "pad_to_max_length",
            "remove_unused_columns",
        ],
        _DATA,
    ),
    **dict.fromkeys(
        [
            "output_dir",
            "overwrite_output_dir",
            "save_steps",
            "save_strategy",
            "save_total_limit",
            "save_only_model",
            "push_to_hub",
            "hub_model_id",
            "experiment_id",
            "logging_steps",
            "logging_dir",
            "logging_first_step",
            "logging_strategy",
            "report_to",
            "run_name",
            "disable_tqdm",
        ],
        _OUTPUT,
    ),
    **dict.fromkeys(
        [
            "do_train",
            "do_eval",
            "do_predict",
            "evaluation_strategy",
            "eval_strategy",
            "eval_steps",
            "per_device_eval_batch_size",
        ],
        _EVAL,
    ),
    **dict.fromkeys(
        [
            "num_train_epochs",
            "warmup_ratio",
            "warmup_steps",
            "lr_scheduler_type",
            "optim",
            "adam_beta1",
            "adam_beta2",
            "adam_epsilon",
            "fp16",
            "bf16",
            "tf32",
            "deepspeed",
            "ddp_find_unused_parameters",
            "dataloader_num_workers",
            "dataloader_prefetch_factor",
            "dataloader_drop_last",
            "gradient_checkpointing_kwargs",
            "local_rank",
        ],
        _RUNTIME,
    ),
}


@dataclasses.dataclass
class UpstreamReport:
    """What happened to each key of the upstream configs: mapped, ignored (why) or unknown."""

    mapped: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    ignored: dict[str, str] = dataclasses.field(default_factory=dict)
    unknown: list[str] = dataclasses.field(default_factory=list)
    overridden: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)
    sources: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, str]:
        """Comma-joined summaries for KFP artifact metadata (scalars only)."""
        return {
            "upstream_mapped_keys": ",".join(sorted(self.mapped)),
            "upstream_ignored_keys": ",".join(sorted(self.ignored)),
            "upstream_unknown_keys": ",".join(self.unknown),
            "upstream_overridden_fields": ",".join(sorted(self.overridden)),
        }


def _parse_json_text(text: str, label: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        # Some upstream files (train_configs/mntp/qwen2.json) end objects with a trailing comma.
        relaxed = re.sub(r",(\s*[}\]])", r"\1", text)
        try:
            data = json.loads(relaxed)
        except json.JSONDecodeError:
            raise MongarsError(
                f"{label}: not valid JSON ({error.msg} at line {error.lineno}); fix the file"
            ) from None
    if not isinstance(data, dict):
        raise MongarsError(f"{label}: expected a JSON object of key: value at top level")
    return data


def read_upstream(source: str | Mapping[str, Any], kind: Kind) -> tuple[dict[str, Any], str]:
    """The parsed upstream config and a description of where it came from."""
    label = f"{kind}_config"
    if isinstance(source, Mapping):
        return dict(source), "mapping"
    text = source.strip()
    if text.startswith("{"):  # a JSON document passed inline (KFP string parameter)
        return _parse_json_text(text, label), "inline JSON"
    path = Path(text).expanduser()
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MongarsError(
            f"{label}: {path} not found; give the path of an upstream JSON"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise MongarsError(f"{label}: {path} cannot be read ({error})") from None
    return _parse_json_text(content, f"{label} {path}"), str(path)


def _steps(values: Mapping[str, Any]) -> Any:
    """max_steps and stop_after_n_steps both stop training: the smaller positive one wins."""
    given = [values[key] for key in _STEP_KEYS if key in values]
    numeric = [v for v in given if isinstance(v, int | float) and not isinstance(v, bool)]
    positive = [v for v in numeric if v > 0]
    if len(numeric) == len(given) and positive:
        return min(positive)
    # Let the type checker of load_config name the bad value.
    return given[0] if len(given) == 1 else given[-1]


def _loss_scale_to_temperature(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return 1.0 / float(value)
    return value  # refused by the config checks with the field named


def map_upstream(data: Mapping[str, Any], kind: Kind, report: UpstreamReport) -> dict[str, Any]:
    """Stage-config values for one upstream file; the report records every key's fate."""
    values: dict[str, Any] = {}
    converters: dict[str, Callable[[Any], Any]] = {"loss_scale": _loss_scale_to_temperature}
    for key in data:
        qualified = f"{kind}.{key}"
        if key in _STEP_KEYS:
            values[f"{kind}_steps"] = _steps(data)
            report.mapped[qualified] = {"field": f"{kind}_steps", "value": data[key]}
        elif key in _PER_STAGE:
            field = f"{kind}_{_PER_STAGE[key]}"
            values[field] = data[key]
            report.mapped[qualified] = {"field": field, "value": data[key]}
        elif key in _STAGE_ONLY[kind]:
            field = _STAGE_ONLY[kind][key]
            values[field] = converters.get(key, lambda v: v)(data[key])
            report.mapped[qualified] = {"field": field, "value": data[key]}
        elif key in _SHARED:
            field = _SHARED[key]
            value = data[key]
            if key == "attn_implementation" and value not in ("sdpa", "eager"):
                report.ignored[qualified] = (
                    f"{value!r} is not verified bidirectional here; the stage uses sdpa or eager"
                )
                continue
            values[field] = value
            report.mapped[qualified] = {"field": field, "value": value}
        elif owners := [other for other in KINDS if key in _STAGE_ONLY[other]]:
            report.ignored[qualified] = (
                f"a {'/'.join(o.upper() for o in owners)} setting; put it in "
                + " or ".join(f"{o}_config" for o in owners)
            )
        elif key == "bidirectional":
            report.ignored[qualified] = "this stage always trains with bidirectional attention"
            if data[key] is not True:
                report.warnings.append(f"{qualified}={data[key]!r}: attention is bidirectional")
        elif key == "loss_class":
            report.ignored[qualified] = "contrastive phases here use InfoNCE (HardNegativeNLLLoss)"
            if data[key] != "HardNegativeNLLLoss":
                report.warnings.append(f"{qualified}={data[key]!r}: InfoNCE is used instead")
        elif key in IGNORED_KEYS:
            report.ignored[qualified] = IGNORED_KEYS[key]
        else:
            report.unknown.append(qualified)
    return values


def resolve_upstream(
    mntp_config: str | Mapping[str, Any] | None,
    simcse_config: str | Mapping[str, Any] | None,
    supervised_config: str | Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], UpstreamReport]:
    """Merged stage-config values from the upstream configs (a later file wins shared keys)."""
    report = UpstreamReport()
    merged: dict[str, Any] = {}
    set_by: dict[str, str] = {}
    sources = zip(KINDS, (mntp_config, simcse_config, supervised_config), strict=True)
    for kind, source in sources:
        if source is None:
            continue
        data, origin = read_upstream(source, kind)
        report.sources[kind] = origin
        values = map_upstream(data, kind, report)
        for field, value in values.items():
            if field in merged and merged[field] != value:
                report.warnings.append(
                    f"{field}: {set_by[field]}_config gives {merged[field]!r}, {kind}_config "
                    f"{value!r}; using the {kind}_config value"
                )
            merged[field] = value
            set_by[field] = kind
    return merged, report


def load_llm2vec_config(values: Mapping[str, Any] | None = None) -> Llm2VecConfig:
    """Build the stage config with any upstream configs applied; keys given directly win."""
    given = dict(values or {})
    merged: dict[str, Any] = {}
    sources = [given.get(f"{kind}_config") for kind in KINDS]
    problems: list[str] = []
    for kind, source in zip(KINDS, sources, strict=True):
        if source is not None and not isinstance(source, str | Mapping):
            problems.append(
                f"{kind}_config: expected a JSON file path or a mapping, got {source!r}"[:300]
            )
        elif isinstance(source, str) and not source.strip():
            problems.append(
                f"{kind}_config: is an empty path; give a JSON file path, a mapping, or leave it "
                "unset"
            )
    if problems:
        raise ConfigError(Llm2VecConfig.CONFIG_NAME, problems)
    upstream, report = resolve_upstream(*sources)
    merged.update(upstream)
    merged.update(given)
    try:
        return load_config(Llm2VecConfig, merged)
    except ConfigError as error:
        raise ConfigError(
            Llm2VecConfig.CONFIG_NAME, _name_sources(error.problems, report, given)
        ) from None


def _name_sources(
    problems: list[str], report: UpstreamReport, given: Mapping[str, Any]
) -> list[str]:
    """Say which upstream key a bad value came from, so the user fixes the right file."""
    origin: dict[str, str] = {}
    for qualified, entry in report.mapped.items():
        kind, key = qualified.split(".", 1)
        origin[entry["field"]] = f"{kind}_config key {key!r}"
    named = []
    for problem in problems:
        field = problem.split(":", 1)[0]
        if field in origin and field not in given:
            problem = f"{field} (from {origin[field]}):{problem.split(':', 1)[1]}"
        named.append(problem)
    return named


def upstream_report(config: Llm2VecConfig) -> UpstreamReport:
    """Describe what the config's upstream files asked for and what the run actually uses.

    A mapped value that differs from the config's (because the stage config overrode it, or the
    config was built without :func:`load_llm2vec_config`) is listed under ``overridden``.
    """
    upstream, report = resolve_upstream(
        config.mntp_config, config.simcse_config, config.supervised_config
    )
    for field, value in upstream.items():
        used = getattr(config, field)
        if used != value and not (
            isinstance(used, float) and isinstance(value, int | float) and abs(used - value) < 1e-12
        ):
            report.overridden[field] = {"upstream": value, "used": used}
    return report


def log_report(report: UpstreamReport) -> None:
    """One warning per kind of key that will not act as upstream intended."""
    if report.unknown:
        LOG.warning(
            "llm2vec: upstream config keys not recognised and not used: %s",
            ", ".join(report.unknown),
        )
    if report.ignored:
        LOG.warning(
            "llm2vec: upstream config keys known but not used here: %s",
            ", ".join(sorted(report.ignored)),
        )
    for field, change in sorted(report.overridden.items()):
        LOG.warning(
            "llm2vec: %s: upstream config gives %r, the stage config uses %r",
            field,
            change["upstream"],
            change["used"],
        )
    for warning in report.warnings:
        LOG.warning("llm2vec: %s", warning)
