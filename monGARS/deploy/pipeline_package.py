"""The compiled pipeline a submission sends: compile from source or read a YAML, and its parameters.

Parameter values given on the command line are checked against the pipeline's declared inputs
before anything reaches the cluster, so a typo or a wrong type fails here in one line instead of
as a failed run an hour later.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from monGARS.mlops.errors import MongarsError
from monGARS.pipelines.backend_rules import (
    check_pipeline,
    pvc_volume_name_problem,
    required_backend_version,
)

# parameterType in the compiled IR -> the Python types a value may have.
_PARAMETER_TYPES: dict[str, tuple[type, ...]] = {
    "STRING": (str,),
    "NUMBER_INTEGER": (int,),
    "NUMBER_DOUBLE": (int, float),
    "BOOLEAN": (bool,),
    "LIST": (list,),
    "STRUCT": (dict,),
}
# A Hugging Face access token; tokens belong in the Kubernetes Secret, never in run parameters
# (they would be stored with the run and shown in the UI).
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
# Parameters that name Kubernetes objects mounted into pods: Kubernetes refuses an empty name.
TOLERATION_OPERATORS = frozenset({"Exists", "Equal"})
TAINT_EFFECTS = frozenset({"NoSchedule", "PreferNoSchedule", "NoExecute"})
_REQUIRED_NAMES = {
    "hf_token_secret": "a Kubernetes Secret (Kubernetes refuses an empty name); the Secret is "
    "optional, so keep the default hf-token for public models even if it does not exist",
    "model_cache_pvc": "the shared cache PersistentVolumeClaim (Kubernetes refuses an empty "
    "name); create it with `kubectl apply -k manifests/overlays/<yours>`",
}


@dataclass(frozen=True)
class PipelinePackage:
    """A compiled pipeline YAML on disk and what submit needs to know about it."""

    path: Path
    name: str
    parameters: dict[str, dict[str, Any]]
    images: frozenset[str]
    digest: str
    backend_version: tuple[int, int] = (2, 0)
    """The oldest KFP release whose backend runs this YAML (``backend_rules``)."""
    accelerator: tuple[str, int] | None = None
    """What each GPU task requests (fixed at compile time), None when no task asks for one."""
    parallelism: int = 1
    """How many loop iterations run at once (the ParallelFor's ``parallelismLimit``; 0: all)."""

    def defaults(self) -> dict[str, Any]:
        """Default values of the pipeline's parameters, typed as the pipeline declares them."""
        return {
            name: _typed_default(spec)
            for name, spec in self.parameters.items()
            if "defaultValue" in spec
        }


def _typed_default(spec: dict[str, Any]) -> Any:
    value = spec["defaultValue"]
    # The IR stores integers as doubles (``4.0``).
    if spec.get("parameterType") == "NUMBER_INTEGER" and isinstance(value, float):
        return int(value)
    return value


def load_package(path: str | Path) -> PipelinePackage:
    """Read a compiled pipeline YAML; refuse anything that is not one, in one line."""
    source = Path(path)
    try:
        raw = source.read_bytes()
        documents = [doc for doc in yaml.safe_load_all(raw) if doc is not None]
    except FileNotFoundError:
        raise MongarsError(
            f"--package: {source} not found; run `make compile` or omit --package to compile now"
        ) from None
    except (OSError, yaml.YAMLError) as error:
        summary = str(error).splitlines()[0]
        raise MongarsError(f"--package: {source} is not readable YAML ({summary})") from None
    spec = documents[0] if documents else None
    if not isinstance(spec, dict) or "root" not in spec or "pipelineInfo" not in spec:
        raise MongarsError(
            f"--package: {source} is not a compiled KFP pipeline (no root/pipelineInfo)"
        )
    parameters = (spec.get("root", {}).get("inputDefinitions") or {}).get("parameters") or {}
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    images = frozenset(
        str(executor["container"]["image"])
        for executor in executors.values()
        if isinstance(executor, dict) and "image" in (executor.get("container") or {})
    )
    platform = documents[1] if len(documents) > 1 and isinstance(documents[1], dict) else None
    problems = check_pipeline(spec, platform)
    if problems:
        raise MongarsError(
            f"--package: {source} would fail on the KFP backend ({problems[0]}"
            f"{f'; and {len(problems) - 1} more' if len(problems) > 1 else ''}); "
            "recompile it with `make compile`"
        )
    return PipelinePackage(
        path=source,
        name=str(spec["pipelineInfo"].get("name", "")),
        parameters=dict(parameters),
        images=images,
        digest=hashlib.sha256(raw).hexdigest(),
        backend_version=required_backend_version(spec, platform),
        accelerator=_accelerator(executors),
        parallelism=_parallelism(spec),
    )


def _parallelism(spec: dict[str, Any]) -> int:
    """The widest ParallelFor: its ``iteratorPolicy.parallelismLimit``, 0 when unbounded, 1 when
    the pipeline has no loop."""
    widest = 1
    for _dag, _name, task in dag_tasks(spec):
        if "parameterIterator" not in task and "artifactIterator" not in task:
            continue
        limit = int((task.get("iteratorPolicy") or {}).get("parallelismLimit") or 0)
        if limit == 0:
            return 0
        widest = max(widest, limit)
    return widest


def _accelerator(executors: dict[str, Any]) -> tuple[str, int] | None:
    for executor in executors.values():
        accelerator = (
            ((executor or {}).get("container") or {}).get("resources", {}).get("accelerator")
        )
        if accelerator:
            kind = str(accelerator.get("resourceType") or accelerator.get("type") or "")
            count = str(accelerator.get("resourceCount") or accelerator.get("count") or "0")
            return kind, int(count) if count.isdigit() else 0
    return None


def compile_package(output: str | Path) -> PipelinePackage:
    """Compile the pipeline from the source tree into ``output`` (backend rules checked)."""
    from monGARS.pipelines.compile import BackendRuleError, compile_pipeline

    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        compile_pipeline(target)
    except BackendRuleError as error:
        raise MongarsError(f"compile: {error}") from None
    return load_package(target)


def parse_param_flags(pairs: list[str]) -> dict[str, str]:
    """``--param key=value`` flags as raw strings (typed later, against the pipeline)."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise MongarsError(f"--param {pair!r}: expected key=value, e.g. --param raft=true")
        values[key] = value
    return values


def read_params_file(path: str | Path) -> dict[str, Any]:
    """A YAML/JSON mapping of parameter values (``--params-file``)."""
    from monGARS.mlops.configs import read_config_file

    try:
        return read_config_file(path)
    except MongarsError as error:
        raise MongarsError(f"--params-file: {error}") from None


def _from_flag(raw: str, parameter_type: str) -> Any:
    """Type a flag's text by the parameter's declared type; leave it as text when it does not fit.

    Numbers go through int()/float() (YAML would read ``1e-4`` as a string); lists and dicts are
    JSON or YAML flow text.
    """
    text = raw.strip()
    if parameter_type == "STRING":
        return raw
    if parameter_type == "NUMBER_INTEGER":
        with contextlib.suppress(ValueError):
            return int(text)
        return raw
    if parameter_type == "NUMBER_DOUBLE":
        with contextlib.suppress(ValueError):
            return float(text)
        return raw
    if parameter_type == "BOOLEAN":
        lowered = text.lower()
        if lowered in ("true", "yes", "1"):
            return True
        if lowered in ("false", "no", "0"):
            return False
        return raw
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return raw


def _type_ok(value: Any, parameter_type: str) -> bool:
    allowed = _PARAMETER_TYPES.get(parameter_type)
    if allowed is None:
        return True
    if isinstance(value, bool) and bool not in allowed:
        return False
    return isinstance(value, allowed)


def resolve_parameters(
    package: PipelinePackage,
    flags: dict[str, str] | None = None,
    file_values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge file values and flags (flags win), type them and check them against the pipeline.

    Returns only the values the user gave: the pipeline's own defaults apply to the rest.
    """
    declared = package.parameters
    problems: list[str] = []
    merged: dict[str, Any] = dict(file_values or {})
    for key, raw in (flags or {}).items():
        parameter_type = str(declared.get(key, {}).get("parameterType", "STRING"))
        merged[key] = _from_flag(raw, parameter_type)
    resolved: dict[str, Any] = {}
    for key, value in merged.items():
        if key not in declared:
            close = difflib.get_close_matches(key, declared, n=1)
            hint = f"did you mean {close[0]}?" if close else "see the pipeline's parameters"
            problems.append(f"{key}: not a parameter of pipeline {package.name!r}; {hint}")
            continue
        # Checked first, so no later message can echo the token back.
        if _HF_TOKEN.search(yaml.safe_dump(value)):
            problems.append(
                f"{key}: looks like a Hugging Face token; put tokens in the Kubernetes Secret "
                "named by hf_token_secret, never in run parameters"
            )
            continue
        parameter_type = str(declared[key].get("parameterType", ""))
        if (
            parameter_type == "NUMBER_DOUBLE"
            and isinstance(value, int)
            and not isinstance(value, bool)
        ):
            value = float(value)
        if not _type_ok(value, parameter_type):
            problems.append(
                f"{key}: expected {parameter_type.lower().replace('_', ' ')}, got {value!r}"[:200]
            )
            continue
        if key in _REQUIRED_NAMES and not str(value).strip():
            problems.append(f"{key}: must name {_REQUIRED_NAMES[key]}")
            continue
        resolved[key] = value
    problems += placement_problems(resolved)
    if problems:
        raise MongarsError("invalid pipeline parameters: " + "; ".join(problems))
    return resolved


def placement_problems(values: dict[str, Any]) -> list[str]:
    """What the backend would accept here and Kubernetes refuse at pod creation, for the given
    placement values (checked at submit/schedule time, not only by ``mongars preflight``).

    The driver (kubeflow/pipelines 2.15.0 ``backend/src/v2/driver/k8s.go: extendPodSpecPatch``)
    unmarshals ``gpu_node_selector`` into ``map[string]string`` and each toleration into a
    ``k8score.Toleration``: a YAML ``true`` or ``1`` as a label value fails there, mid-run, at the
    first GPU task. ``model_cache_pvc`` becomes the pod volume's name (``makeVolumeMountPatch``).
    """
    problems: list[str] = []
    if "gpu_node_selector" in values:
        selector = values["gpu_node_selector"]
        if not isinstance(selector, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in selector.items()
        ):
            wrong = (
                {k: v for k, v in selector.items() if not isinstance(v, str)}
                if isinstance(selector, dict)
                else selector
            )
            problems.append(
                f"gpu_node_selector: must map label names to string values (quote them, e.g. "
                f'{{"nvidia.com/gpu.present": "true"}}); got {wrong!r}'[:240]
            )
    if "gpu_tolerations" in values:
        tolerations = values["gpu_tolerations"]
        if isinstance(tolerations, dict):
            tolerations = [tolerations]
        if not isinstance(tolerations, list) or not all(isinstance(t, dict) for t in tolerations):
            problems.append(
                "gpu_tolerations: must be a list of {key, operator, value, effect} objects"
            )
            tolerations = []
        for index, toleration in enumerate(tolerations):
            problems += _toleration_problems(index, toleration)
    pvc = values.get("model_cache_pvc")
    if isinstance(pvc, str) and pvc.strip():
        problem = pvc_volume_name_problem(pvc)
        if problem:
            problems.append(f"model_cache_pvc: {problem}")
    return problems


def _toleration_problems(index: int, toleration: dict[str, Any]) -> list[str]:
    problems = []
    operator = toleration.get("operator", "Equal")
    if operator not in TOLERATION_OPERATORS:
        problems.append(f"gpu_tolerations[{index}].operator: {operator!r} is not Exists or Equal")
    if toleration.get("effect", "") not in TAINT_EFFECTS | {""}:
        problems.append(
            f"gpu_tolerations[{index}].effect: {toleration.get('effect')!r} is not one of "
            f"{', '.join(sorted(TAINT_EFFECTS))}"
        )
    if not toleration.get("key") and operator != "Exists":
        problems.append(f"gpu_tolerations[{index}]: an empty key needs operator Exists")
    for field_name in ("key", "value", "operator", "effect"):
        if field_name in toleration and not isinstance(toleration[field_name], str):
            problems.append(
                f"gpu_tolerations[{index}].{field_name}: must be a string, got "
                f"{toleration[field_name]!r}"
            )
    return problems


def dag_tasks(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every task of every DAG in a compiled spec: (DAG name, task name, task spec).

    The root DAG and each sub-DAG (a ParallelFor or condition body is a component with a
    ``dag``) list their own tasks; the driver reads a task's caching option from the DAG that
    holds it (kubeflow/pipelines 2.15.0 ``backend/src/v2/driver/container.go: Container`` reads
    ``opts.Task.GetCachingOptions().GetEnableCache()``), so an override must reach all of them.
    """
    found = [("root", name, task) for name, task in spec["root"]["dag"].get("tasks", {}).items()]
    for component_name, component in (spec.get("components") or {}).items():
        for name, task in ((component or {}).get("dag") or {}).get("tasks", {}).items():
            found.append((component_name, name, task))
    return found


def without_cache(package: PipelinePackage, output: str | Path) -> PipelinePackage:
    """A copy of ``package`` at ``output`` whose every task, loop bodies included, skips the cache.

    Why not ``kfp.Client(enable_caching=False)``: the SDK (kfp 2.17 ``client.py:
    _create_job_config`` -> ``_override_caching_options``) rewrites only
    ``pipeline_spec.root.dag.tasks`` and only when the run carries the package inline, so tasks
    inside the ParallelFor keep their cache and a run of an uploaded pipeline version keeps all of
    it. The v2beta1 run has no run-level cache switch (``backend/api/v2beta1/run.proto``; the
    server-wide ``CacheDisabled`` in ``apiserver/template/template.go: TemplateOptions`` is an
    install setting), so the IR itself is rewritten: every task in every DAG gets
    ``cachingOptions: {}`` (``enableCache`` false, what the SDK compiles for
    ``set_caching_options(False)``). A task that is not cached still writes its result, so the
    next cached run reuses this one's fresh outputs.
    """
    documents = [doc for doc in yaml.safe_load_all(package.path.read_bytes()) if doc is not None]
    for _dag, _name, task in dag_tasks(documents[0]):
        task["cachingOptions"] = {}
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump_all(documents, sort_keys=True), encoding="utf-8")
    return load_package(target)


def default_version_name(package: PipelinePackage, package_version: str) -> str:
    """A pipeline version name that changes exactly when the compiled YAML does."""
    return f"{package_version}-{package.digest[:12]}"
