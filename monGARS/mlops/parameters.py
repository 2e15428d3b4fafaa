"""Every pipeline parameter, declared once: name, type, default, help, and the stage config it sets.

The pipeline's signature is built from this table (``pipelines/mongars_pipeline.py``), the
``mongars run`` flags are generated from it (``monGARS/cli.py``), and each stage's config values
are folded from a task's raw parameters by ``stage_values`` — the one fold that both the
components (through ``stages.run_*``) and up-front validation (``stages.validate_parameters``)
use. Validation itself stays in the stage configs; a test checks that every default here equals
the stage config's own default, and that each component takes exactly its stage's parameters.

Adding a flag to a stage: one ``Parameter`` here (plus the config field it sets, and the
component argument that receives it). Stdlib only: the pipeline imports this while compiling.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CLUSTER_BASE_MODEL = "mistralai/Mistral-7B-v0.2"
DEFAULT_GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


@dataclass(frozen=True)
class Parameter:
    """One pipeline parameter.

    ``sets`` lists the ``(stage, config field)`` pairs it folds into; a parameter with none is
    used as it is (placement, secrets, switches). ``overrides`` marks a stage's ``*_config`` dict,
    whose keys win over every flat parameter of that stage. ``flag`` exposes it on ``mongars run``.
    """

    name: str
    type: type
    default: Any
    help: str
    sets: tuple[tuple[str, str], ...] = ()
    overrides: str = ""
    flag: bool = False

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


def _sets(stage: str, field: str | None = None, *more: str) -> tuple[tuple[str, str], ...]:
    return ((stage, field or ""), *((extra, field or "") for extra in more))


PARAMETERS: tuple[Parameter, ...] = (
    Parameter(
        "base_model",
        str,
        CLUSTER_BASE_MODEL,
        "hub id (org/name, optionally @revision), model folder, gs:// URI, or 'tiny'; local "
        "runs default to 'tiny' and its small-model preset",
        flag=True,
    ),
    Parameter("run_name", str, "mongars", "title of the run's report"),
    Parameter(
        "datasets_config",
        dict,
        {},
        "build_datasets config keys (docs/datasets.md); they win over the flat parameters",
        overrides="build_datasets",
    ),
    Parameter(
        "languages",
        list,
        ["fr"],
        "languages records must be in, e.g. fr (comma-separated on the command line)",
        sets=_sets("build_datasets", "languages"),
        flag=True,
    ),
    Parameter(
        "val_split",
        float,
        0.1,
        "share of each corpus and module held out for validation",
        sets=_sets("build_datasets", "val_split"),
        flag=True,
    ),
    Parameter(
        "split_seed",
        int,
        42,
        "seed of the train/validation split",
        sets=_sets("build_datasets", "seed"),
        flag=True,
    ),
    Parameter(
        "seed",
        int,
        42,
        "training seed of sft, llm2vec and raft",
        sets=(("sft", "seed"), ("llm2vec", "seed"), ("raft", "seed")),
        flag=True,
    ),
    Parameter("lora_r", int, 16, "LoRA rank", sets=_sets("sft", "lora_r"), flag=True),
    Parameter("lora_alpha", int, 32, "LoRA alpha", sets=_sets("sft", "lora_alpha"), flag=True),
    Parameter(
        "lora_dropout", float, 0.05, "LoRA dropout", sets=_sets("sft", "lora_dropout"), flag=True
    ),
    Parameter(
        "epochs",
        float,
        3.0,
        "SFT epochs over the module's data (max_steps wins when > 0)",
        sets=_sets("sft", "epochs"),
        flag=True,
    ),
    Parameter(
        "max_steps",
        int,
        -1,
        "SFT optimizer steps; -1: run the epochs",
        sets=_sets("sft", "max_steps"),
        flag=True,
    ),
    Parameter(
        "batch_size",
        int,
        4,
        "SFT micro-batch size (the memory plan may lower it)",
        sets=_sets("sft", "batch_size"),
        flag=True,
    ),
    Parameter(
        "learning_rate",
        float,
        2e-4,
        "SFT peak learning rate",
        sets=_sets("sft", "learning_rate"),
        flag=True,
    ),
    Parameter(
        "vram_budget_mb",
        int,
        0,
        "GPU memory the SFT plan may use, MiB; 0: what the GPU has",
        sets=_sets("sft", "vram_budget_mb"),
        flag=True,
    ),
    Parameter(
        "checkpoint_root",
        str,
        "",
        "where sft checkpoints go; '' = checkpoints/ on the shared cache volume",
        sets=_sets("sft", "checkpoint_root"),
    ),
    Parameter(
        "sft_config",
        dict,
        {},
        "sft config keys (docs/sft.md); they win over the flat parameters",
        overrides="sft",
    ),
    Parameter(
        "mntp_config",
        dict,
        {},
        "upstream llm2vec MNTP JSON config (a file on the command line)",
        sets=_sets("llm2vec", "mntp_config"),
        flag=True,
    ),
    Parameter(
        "simcse_config",
        dict,
        {},
        "upstream llm2vec SimCSE JSON config (a file on the command line)",
        sets=_sets("llm2vec", "simcse_config"),
        flag=True,
    ),
    Parameter(
        "llm2vec_config",
        dict,
        {},
        "llm2vec config keys (docs/llm2vec.md); they win over the flat parameters",
        overrides="llm2vec",
    ),
    Parameter("raft", bool, False, "run the RAFT stage (otherwise the SFT adapter is exported)"),
    Parameter(
        "raft_config",
        dict,
        {},
        "raft config keys (docs/raft.md); they win over the flat parameters",
        overrides="raft",
    ),
    Parameter(
        "export_method",
        str,
        "gguf",
        "gguf (f16 + quant_types), or a llama.cpp quant type such as q4_k_m, which is added",
        sets=_sets("export", "export_method"),
        flag=True,
    ),
    Parameter(
        "quant_types",
        list,
        ["q8_0", "q4_k_m"],
        "GGUF quant types written next to f16 (comma-separated on the command line)",
        sets=_sets("export", "quant_types"),
        flag=True,
    ),
    Parameter(
        "export_cmd",
        str,
        "",
        "external converter command with {model_dir} and {gguf_path}; '' = the built-in writer",
        sets=_sets("export", "export_cmd"),
        flag=True,
    ),
    Parameter(
        "export_config",
        dict,
        {},
        "export config keys (docs/export.md); they win over the flat parameters",
        overrides="export",
    ),
    Parameter(
        "eval_max_examples",
        int,
        32,
        "held-out items per module the evaluate stage scores (bounds its cost)",
        sets=_sets("evaluate", "max_examples"),
        flag=True,
    ),
    Parameter(
        "eval_answer_length",
        int,
        96,
        "length of each greedy answer the evaluate stage generates",
        sets=_sets("evaluate", "max_new_tokens"),
        flag=True,
    ),
    Parameter(
        "evaluate_config",
        dict,
        {},
        "evaluate config keys (docs/evaluate.md); they win over the flat parameters",
        overrides="evaluate",
    ),
    Parameter(
        "champion_registry",
        str,
        "",
        "where champions live between runs: gs://bucket/prefix or a folder; '' = champions/ on "
        "the shared cache volume (local runs: <runs-root>/champions)",
        sets=_sets("promote", "registry"),
        flag=True,
    ),
    Parameter(
        "promote_min_gain",
        float,
        0.0,
        "assistant-token NLL (nats/token) the tuned model must gain over the base to be promoted",
        sets=_sets("promote", "min_gain_over_base"),
        flag=True,
    ),
    Parameter(
        "promote_tolerance",
        float,
        0.02,
        "regression allowed against the champion: NLL share, or points of a score in [0, 1]",
        sets=_sets("promote", "tolerance"),
        flag=True,
    ),
    Parameter(
        "promote_min_french_share",
        float,
        0.5,
        "share of generated answers that must be French for a promotion",
        sets=_sets("promote", "min_french_share"),
        flag=True,
    ),
    Parameter(
        "promote_config",
        dict,
        {},
        "promotion gate keys (docs/evaluate.md); they win over the flat parameters",
        overrides="promote",
    ),
    Parameter("gpu_node_selector", dict, {}, "node labels GPU tasks require"),
    Parameter("gpu_tolerations", list, DEFAULT_GPU_TOLERATIONS, "tolerations for GPU node taints"),
    Parameter(
        "hf_token_secret",
        str,
        "hf-token",
        "Kubernetes Secret (key token) exposed as HF_TOKEN; optional, never ''",
    ),
    Parameter(
        "model_cache_pvc",
        str,
        "mongars-model-cache",
        "shared cache PVC: base models fetched once, checkpoints",
    ),
)
BY_NAME: dict[str, Parameter] = {parameter.name: parameter for parameter in PARAMETERS}
STAGES = ("build_datasets", "sft", "llm2vec", "raft", "export", "evaluate", "promote")


def defaults() -> dict[str, Any]:
    """Every parameter's default (fresh copies: lists and dicts are never shared)."""
    return {p.name: json.loads(json.dumps(p.default)) for p in PARAMETERS}


def stage_parameters(stage: str) -> list[Parameter]:
    """The parameters a stage's task takes: those that set its config, then its overrides dict."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}; got {stage!r}")
    folded = [p for p in PARAMETERS if any(s == stage for s, _ in p.sets)]
    return folded + [p for p in PARAMETERS if p.overrides == stage]


def stage_values(stage: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A stage's config values from raw parameters: flat ones by field, then its overrides dict.

    Names the table does not declare for ``stage`` (artifacts, ``module``, other stages'
    parameters) are ignored, so a component can hand over everything it received.
    """
    values: dict[str, Any] = {}
    for parameter in stage_parameters(stage):
        if parameter.name not in parameters:
            continue
        value = parameters[parameter.name]
        if parameter.overrides:
            values.update(value or {})
            continue
        for target_stage, field in parameter.sets:
            if target_stage == stage and not (parameter.type is dict and not value):
                values[field] = value
    return values
