"""Read a compiled pipeline the way the KFP v2 backend's driver does, before a cluster does.

``kfp.local`` resolves parameters loosely and ignores every Kubernetes setting, so a pipeline that
runs locally can still stop at its first GPU task on a cluster. These rules restate, from the
backend's source (kubeflow/pipelines, ``backend/src/v2/driver``), what the driver needs of the
IR; ``check_pipeline`` lists every place a compiled pipeline breaks one:

* ``resolve.go: resolveInputs`` resolves a task's ``componentInputParameter`` and
  ``componentInputArtifact`` in the inputs of the DAG execution that holds the task ("parent DAG
  does not have input parameter"): every name a task reads must be declared by the enclosing DAG
  (root, loop or condition), and a ``taskOutput*`` producer must be a task of that same DAG.
* ``driver.go: initPodSpecPatch`` resolves ``{{$.inputs.parameters['x']}}`` placeholders of the
  container's resources (accelerator type and count, cpu, memory) and image through
  ``resolvePodSpecInputRuntimeParameter``, which looks ``x`` up in the task's own executor inputs
  and reads it with ``GetStringValue``: ``x`` must be a task input, and of STRING type (an integer
  reads as "" and the quantity fails to parse).
* ``driver.go: extendPodSpecPatch`` resolves the Kubernetes platform spec (node selector and
  toleration JSON, secret names, PVC names) with ``resolveK8sJsonParameter``,
  ``resolveInputParameter`` and ``resolveInputParameterStr`` against the *parent DAG's*
  parameters: those names must be declared by the enclosing DAG, a node selector must be a STRUCT,
  tolerations a STRUCT or LIST, secret and PVC names STRING — and a Secret name cannot be empty
  (Kubernetes refuses the pod).
* ``k8s.go: makeVolumeMountPatch`` names the pod's volume after the PVC (``Volume{Name:
  pvcName}``): a pod volume name must be a DNS-1123 *label* (no ``.``, at most 63 characters)
  while a PVC name may be a DNS-1123 *subdomain*, so a valid PVC such as ``cache.v2`` gives a pod
  the API server refuses (``pvc_volume_name_problem``).

``required_backend_version`` names the oldest backend that implements every feature the IR uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}")
_CONDITION_INPUT = re.compile(r"inputs\.parameter_values\['([^']+)'\]")
_RESOURCE_FIELDS = (
    "resourceCpuLimit",
    "resourceCpuRequest",
    "resourceMemoryLimit",
    "resourceMemoryRequest",
)
_K8S_PARAMETER_TYPES = {
    "node selector": {"STRUCT"},
    "toleration": {"STRUCT", "LIST"},
    "secret name": {"STRING"},
    "PVC name": {"STRING"},
}

# Backend features the IR can use, and the first KFP release whose driver implements each
# (kubeflow/pipelines release notes and backend/src/v2/driver history).
FEATURE_VERSIONS: dict[str, tuple[int, int]] = {
    "node selector / tolerations from JSON parameters": (2, 5),
    "secret and PVC names from parameters": (2, 5),
    "image pull secrets (secretNameParameter)": (2, 5),
    "retry policy": (2, 5),
    # argocompiler/dag.go sets the loop template's Argo ``parallelism`` from 2.4.0 on; 2.3's
    # argocompiler ignores ``iteratorPolicy`` (only the Tekton compiler read it) and runs every
    # iteration at once.
    "ParallelFor parallelism limit": (2, 4),
    "artifacts collected from a ParallelFor": (2, 14),
    "empty dict or list parameter defaults": (2, 14),
    "optional secret as environment variable": (2, 15),
    # resolve.go: GetProducerTask picks the COMPLETE/CACHED branch of a parameter OneOf
    # (ValueFromOneof) from 2.14 on; for artifacts it took the last selector until 2.17.
    "dsl.OneOf over parameters": (2, 14),
    "dsl.OneOf over artifacts": (2, 17),
}


@dataclass(frozen=True)
class _Scope:
    """A DAG the driver resolves tasks in: its name, declared inputs and tasks."""

    name: str
    parameters: dict[str, dict[str, Any]]
    artifacts: dict[str, dict[str, Any]]
    tasks: dict[str, dict[str, Any]]


def _scope(name: str, component: dict[str, Any]) -> _Scope:
    inputs = component.get("inputDefinitions") or {}
    return _Scope(
        name=name,
        parameters=dict(inputs.get("parameters") or {}),
        artifacts=dict(inputs.get("artifacts") or {}),
        tasks=dict((component.get("dag") or {}).get("tasks") or {}),
    )


def _scopes(spec: dict[str, Any]) -> Iterator[_Scope]:
    yield _scope("root", spec["root"])
    for name, component in (spec.get("components") or {}).items():
        if "dag" in component:
            yield _scope(name, component)


def _executor_configs(platform: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not platform:
        return {}
    kubernetes = (platform.get("platforms") or {}).get("kubernetes") or {}
    return dict((kubernetes.get("deploymentSpec") or {}).get("executors") or {})


def _k8s_parameter_specs(config: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every parameter-driven field of a KubernetesExecutorConfig, with what it configures."""
    selector = config.get("nodeSelector") or {}
    if "nodeSelectorJson" in selector:
        yield "node selector", selector["nodeSelectorJson"]
    for toleration in config.get("tolerations") or []:
        if "tolerationJson" in toleration:
            yield "toleration", toleration["tolerationJson"]
    for secret in [*(config.get("secretAsEnv") or []), *(config.get("secretAsVolume") or [])]:
        if "secretNameParameter" in secret:
            yield "secret name", secret["secretNameParameter"]
    for mount in config.get("pvcMount") or []:
        if "pvcNameParameter" in mount:
            yield "PVC name", mount["pvcNameParameter"]


def _constant_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int | float):
        return "NUMBER"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, list):
        return "LIST"
    return "STRUCT"


# Kubernetes' DNS-1123 label (apimachinery validation: IsDNS1123Label), what a pod volume name is.
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def pvc_volume_name_problem(name: str) -> str | None:
    """Why the backend cannot mount PVC ``name`` (it becomes the pod volume's name), or None.

    kubeflow/pipelines 2.15.0 ``backend/src/v2/driver/k8s.go: makeVolumeMountPatch`` sets both
    ``VolumeMount.Name`` and ``Volume.Name`` to the PVC name; the pod's volume names are
    validated as DNS-1123 labels, so a PVC name with a ``.`` (valid for the PVC itself) or longer
    than 63 characters stops the pod at creation.
    """
    if len(name) > 63 or not _DNS1123_LABEL.match(name):
        return (
            f"{name!r} cannot be mounted: the KFP driver uses the PVC name as the pod volume's "
            "name, which must be a DNS-1123 label (lowercase letters, digits and '-', at most 63 "
            "characters, no '.'); use or create a PVC named that way"
        )
    return None


class _Checker:
    def __init__(self, spec: dict[str, Any], platform: dict[str, Any] | None) -> None:
        self.spec = spec
        self.components = dict(spec.get("components") or {})
        self.executors = dict((spec.get("deploymentSpec") or {}).get("executors") or {})
        self.k8s = _executor_configs(platform)
        self.root_parameters: dict[str, dict[str, Any]] = dict(
            (spec["root"].get("inputDefinitions") or {}).get("parameters") or {}
        )
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def run(self) -> list[str]:
        for scope in _scopes(self.spec):
            for task_name, task in sorted(scope.tasks.items()):
                self._check_task(scope, task_name, task)
        return self.problems

    # -- one task -----------------------------------------------------------------------

    def _check_task(self, scope: _Scope, task_name: str, task: dict[str, Any]) -> None:
        where = f"{scope.name}/{task_name}"
        inputs = task.get("inputs") or {}
        parameters = dict(inputs.get("parameters") or {})
        for name, source in sorted(parameters.items()):
            self._check_source(scope, where, f"parameter {name}", source, artifact=False)
        for name, source in sorted((inputs.get("artifacts") or {}).items()):
            self._check_source(scope, where, f"artifact {name}", source, artifact=True)
        for dependency in task.get("dependentTasks") or []:
            if dependency not in scope.tasks:
                self.fail(where, f"depends on {dependency!r}, which is not a task of this DAG")
        iterator = task.get("parameterIterator") or task.get("artifactIterator") or {}
        item_input = (iterator.get("items") or {}).get("inputParameter") or (
            iterator.get("items") or {}
        ).get("inputArtifact")
        if (
            item_input
            and item_input not in parameters
            and item_input not in (inputs.get("artifacts") or {})
        ):
            self.fail(where, f"loop items {item_input!r} are not an input of the loop task")
        condition = (task.get("triggerPolicy") or {}).get("condition", "")
        for name in _CONDITION_INPUT.findall(condition):
            if name not in parameters:
                self.fail(where, f"condition reads {name!r}, which is not an input of the task")
        component = self.components.get((task.get("componentRef") or {}).get("name", ""), {})
        label = component.get("executorLabel")
        if label:
            self._check_container(scope, where, label, parameters)

    def _check_source(
        self, scope: _Scope, where: str, what: str, source: dict[str, Any], *, artifact: bool
    ) -> None:
        declared = scope.artifacts if artifact else scope.parameters
        key = "componentInputArtifact" if artifact else "componentInputParameter"
        if key in source and source[key] not in declared:
            self.fail(
                where,
                f"{what} reads {source[key]!r}, which the enclosing DAG {scope.name} does not "
                "declare (driver: parent DAG does not have input parameter)",
            )
        output = source.get("taskOutputArtifact" if artifact else "taskOutputParameter")
        if output and output.get("producerTask") not in scope.tasks:
            self.fail(
                where,
                f"{what} comes from {output.get('producerTask')!r}, which is not a task of "
                f"{scope.name}",
            )

    def _source_type(self, scope: _Scope, source: dict[str, Any]) -> str | None:
        """The IR type a parameter source resolves to, where the IR says it."""
        if "componentInputParameter" in source:
            name = source["componentInputParameter"]
            declared = scope.parameters.get(name) or self.root_parameters.get(
                name.removeprefix("pipelinechannel--")
            )
            return declared.get("parameterType") if declared else None
        constant = (source.get("runtimeValue") or {}).get("constant")
        if constant is not None:
            return _constant_type(constant)
        return None

    def _check_container(
        self, scope: _Scope, where: str, label: str, parameters: dict[str, Any]
    ) -> None:
        container = (self.executors.get(label) or {}).get("container") or {}
        resources = container.get("resources") or {}
        fields: list[tuple[str, Any]] = [(name, resources.get(name)) for name in _RESOURCE_FIELDS]
        accelerator = resources.get("accelerator") or {}
        fields += [
            ("accelerator type", accelerator.get("resourceType")),
            ("accelerator count", accelerator.get("resourceCount")),
            ("image", container.get("image")),
        ]
        for what, value in fields:
            for name in _PLACEHOLDER.findall(str(value or "")):
                if name not in parameters:
                    self.fail(where, f"{what} reads {name!r}, which is not an input of the task")
                    continue
                kind = self._source_type(scope, parameters[name])
                if kind is not None and kind != "STRING":
                    self.fail(
                        where,
                        f"{what} reads {name!r} of type {kind}; the driver reads it as a string "
                        "(GetStringValue) and gets an empty value",
                    )
        for what, source in _k8s_parameter_specs(self.k8s.get(label) or {}):
            self._check_k8s_parameter(scope, where, what, source)

    def _check_k8s_parameter(
        self, scope: _Scope, where: str, what: str, source: dict[str, Any]
    ) -> None:
        self._check_source(scope, where, what, source, artifact=False)
        kind = self._source_type(scope, source)
        allowed = _K8S_PARAMETER_TYPES[what]
        if kind is not None and kind not in allowed:
            self.fail(where, f"{what} is of type {kind}; the driver needs {' or '.join(allowed)}")
        if what in ("secret name", "PVC name") and self._root_value(scope, source) == "":
            self.fail(where, f"{what} defaults to an empty string; Kubernetes refuses the pod")
        default = self._root_value(scope, source)
        if what == "PVC name" and isinstance(default, str) and default:
            problem = pvc_volume_name_problem(default)
            if problem:
                self.fail(where, f"PVC name default {problem}")

    def _root_value(self, scope: _Scope, source: dict[str, Any]) -> Any:
        """The root default a ``componentInputParameter`` chain ends at (channels keep names)."""
        name = source.get("componentInputParameter")
        if name is None:
            return (source.get("runtimeValue") or {}).get("constant")
        declared = self.root_parameters.get(name.removeprefix("pipelinechannel--")) or {}
        return declared.get("defaultValue")


def check_pipeline(spec: dict[str, Any], platform: dict[str, Any] | None = None) -> list[str]:
    """Every place the compiled pipeline breaks a rule of the KFP backend's driver."""
    return _Checker(spec, platform).run()


def used_features(spec: dict[str, Any], platform: dict[str, Any] | None = None) -> set[str]:
    """The backend features (keys of ``FEATURE_VERSIONS``) that the compiled pipeline relies on."""
    features: set[str] = set()
    components = dict(spec.get("components") or {})
    loops = {
        task["componentRef"]["name"]
        for scope in _scopes(spec)
        for task in scope.tasks.values()
        if "parameterIterator" in task or "artifactIterator" in task
    }
    for scope in _scopes(spec):
        for task in scope.tasks.values():
            if "retryPolicy" in task:
                features.add("retry policy")
            if (task.get("iteratorPolicy") or {}).get("parallelismLimit"):
                features.add("ParallelFor parallelism limit")
            for source in ((task.get("inputs") or {}).get("artifacts") or {}).values():
                producer = (source.get("taskOutputArtifact") or {}).get("producerTask")
                producer_ref = (scope.tasks.get(producer) or {}).get("componentRef", {})
                if producer_ref.get("name") in loops:
                    features.add("artifacts collected from a ParallelFor")
    for component in [spec["root"], *components.values()]:
        outputs = ((component.get("dag") or {}).get("outputs") or {}).get("artifacts") or {}
        if any(len(out.get("artifactSelectors") or []) > 1 for out in outputs.values()):
            features.add("dsl.OneOf over artifacts")
        parameters = ((component.get("dag") or {}).get("outputs") or {}).get("parameters") or {}
        if any("valueFromOneof" in out for out in parameters.values()):
            features.add("dsl.OneOf over parameters")
    root_parameters = (spec["root"].get("inputDefinitions") or {}).get("parameters") or {}
    if any(p.get("defaultValue") in ({}, []) for p in root_parameters.values()):
        features.add("empty dict or list parameter defaults")
    for config in _executor_configs(platform).values():
        for what, _source in _k8s_parameter_specs(config):
            if what in ("node selector", "toleration"):
                features.add("node selector / tolerations from JSON parameters")
            else:
                features.add("secret and PVC names from parameters")
        if config.get("imagePullSecret"):
            features.add("image pull secrets (secretNameParameter)")
        if any(secret.get("optional") for secret in config.get("secretAsEnv") or []):
            features.add("optional secret as environment variable")
    return features


def required_backend_version(
    spec: dict[str, Any], platform: dict[str, Any] | None = None
) -> tuple[int, int]:
    """The oldest KFP release (major, minor) whose backend runs this compiled pipeline."""
    versions = [FEATURE_VERSIONS[f] for f in used_features(spec, platform)]
    return max(versions, default=(2, 0))


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``2.15.0`` / ``v2.15.0-rc.1`` / ``2.15`` -> (2, 15, 0); None when it is not a version."""
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
