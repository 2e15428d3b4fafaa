"""The backend-rule checker on small hand-built IRs: one feature or one broken rule at a time.

``test_backend_rules.py`` checks the committed YAML passes and one broken copy per rule fails.
These IRs reach what the committed pipeline does not use (constant Kubernetes parameters of
every type, artifact-iterated loops, conditions, several placeholders in one field) and pin each
backend feature's floor at its boundary: the release just below the floor is refused by the
submit-time check (``preflight.check_kfp_version``), the floor itself is accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from monGARS.deploy.preflight import check_kfp_version
from monGARS.pipelines.backend_rules import (
    FEATURE_VERSIONS,
    check_pipeline,
    required_backend_version,
    used_features,
)

IR = tuple[dict[str, Any], dict[str, Any] | None]
"""A compiled pipeline: the pipeline spec and the platform spec (None without one)."""

# The first KFP release whose backend implements each feature, read in kubeflow/pipelines at
# that tag (backend/src/v2). KFP backends went from 2.5.0 straight to 2.14.0.
FLOORS: dict[str, tuple[int, int]] = {
    # driver.go: extendPodSpecPatch resolves NodeSelectorJson / TolerationJson (2.5.0).
    "node selector / tolerations from JSON parameters": (2, 5),
    # driver.go: resolveInputParameterStr for SecretNameParameter / PvcNameParameter (2.5.0).
    "secret and PVC names from parameters": (2, 5),
    # driver.go: ImagePullSecret.SecretNameParameter is read from 2.5.0 (before: SecretName only).
    "image pull secrets (secretNameParameter)": (2, 5),
    # argocompiler/container.go: getTaskRetryPolicySpec, in 2.4.1 but not 2.4.0 (floors are
    # minor releases: every 2.5.x has it, not every 2.4.x).
    "retry policy": (2, 5),
    # argocompiler/dag.go: Argo loop parallelism from iteratorPolicy (2.4.0; Tekton only before).
    "ParallelFor parallelism limit": (2, 4),
    # dsl.Collected for parameters and artifacts (#11725, 2.14.0).
    "artifacts collected from a ParallelFor": (2, 14),
    # empty toleration dict/list JSON ignored instead of failing the pod (#11898, 2.14.0).
    "empty dict or list parameter defaults": (2, 14),
    # optional field for a Secret / ConfigMap as env (#12216, 2.15.0).
    "optional secret as environment variable": (2, 15),
    # resolve.go: ValueFromOneof picks the COMPLETE/CACHED branch (2.14.0).
    "dsl.OneOf over parameters": (2, 14),
    # resolve artifact OneOf outputs at runtime (#13436, 2.17.0); earlier: the last selector.
    "dsl.OneOf over artifacts": (2, 17),
}


# -- a small IR: root parameters, a ``train`` container task, optional loop and sub-DAGs -------


def _pipeline(
    *,
    root_parameters: dict[str, dict[str, Any]] | None = None,
    task: dict[str, Any] | None = None,
    resources: dict[str, Any] | None = None,
    image: str = "registry.example/train:1",
    k8s: dict[str, Any] | None = None,
) -> IR:
    """One root task ``train`` running container executor ``exec-train``; ``task`` is merged into
    the task, ``k8s`` is its KubernetesExecutorConfig."""
    train: dict[str, Any] = {"componentRef": {"name": "comp-train"}, "taskInfo": {"name": "train"}}
    train.update(task or {})
    spec: dict[str, Any] = {
        "pipelineInfo": {"name": "edges"},
        "root": {
            "inputDefinitions": {"parameters": root_parameters or {}},
            "dag": {"tasks": {"train": train}},
        },
        "components": {"comp-train": {"executorLabel": "exec-train"}},
        "deploymentSpec": {
            "executors": {
                "exec-train": {"container": {"image": image, "resources": resources or {}}}
            }
        },
    }
    platform = None
    if k8s is not None:
        platform = {
            "platforms": {"kubernetes": {"deploymentSpec": {"executors": {"exec-train": k8s}}}}
        }
    return spec, platform


def _input(name: str) -> dict[str, Any]:
    return {"componentInputParameter": name}


def _constant(value: Any) -> dict[str, Any]:
    return {"runtimeValue": {"constant": value}}


def _string(default: Any = None) -> dict[str, Any]:
    declared: dict[str, Any] = {"parameterType": "STRING"}
    if default is not None:
        declared["defaultValue"] = default
    return declared


def _loop_pipeline(
    *, iterator: str = "parameterIterator", loop_inputs: dict[str, Any] | None = None
) -> IR:
    """Root: ``list-modules`` -> ``for-loop-1`` (a ParallelFor over its output, sub-DAG
    ``comp-for-loop-1`` running ``train``) -> ``report`` reading train's collected artifact."""
    artifact = iterator == "artifactIterator"
    items = (
        {"inputArtifact": "pipelinechannel--list-modules-modules"}
        if artifact
        else {"inputParameter": "pipelinechannel--list-modules-Output"}
    )
    producer = {
        "taskOutputArtifact" if artifact else "taskOutputParameter": {
            "producerTask": "list-modules",
            "outputArtifactKey" if artifact else "outputParameterKey": (
                "modules" if artifact else "Output"
            ),
        }
    }
    inputs = loop_inputs or (
        {"artifacts": {"pipelinechannel--list-modules-modules": producer}}
        if artifact
        else {"parameters": {"pipelinechannel--list-modules-Output": producer}}
    )
    item = "pipelinechannel--list-modules-Output-loop-item"
    loop_task = {
        "componentRef": {"name": "comp-for-loop-1"},
        "dependentTasks": ["list-modules"],
        "inputs": inputs,
        iterator: {"itemInput": item, "items": items},
        "taskInfo": {"name": "per-module"},
    }
    train_input = (
        {"artifacts": {"module": {"componentInputArtifact": item}}}
        if artifact
        else {"parameters": {"module": _input(item)}}
    )
    loop_declares = {"artifacts" if artifact else "parameters": {item: {}}}
    report = {
        "componentRef": {"name": "comp-report"},
        "dependentTasks": ["for-loop-1"],
        "inputs": {
            "artifacts": {
                "summaries": {
                    "taskOutputArtifact": {
                        "producerTask": "for-loop-1",
                        "outputArtifactKey": "pipelinechannel--train-summary",
                    }
                }
            }
        },
        "taskInfo": {"name": "report"},
    }
    spec: dict[str, Any] = {
        "pipelineInfo": {"name": "loop"},
        "root": {
            "dag": {
                "tasks": {
                    "list-modules": {
                        "componentRef": {"name": "comp-list-modules"},
                        "taskInfo": {"name": "list-modules"},
                    },
                    "for-loop-1": loop_task,
                    "report": report,
                }
            }
        },
        "components": {
            "comp-list-modules": {"executorLabel": "exec-list-modules"},
            "comp-train": {"executorLabel": "exec-train"},
            "comp-report": {"executorLabel": "exec-report"},
            "comp-for-loop-1": {
                "inputDefinitions": loop_declares,
                "dag": {
                    "tasks": {
                        "train": {
                            "componentRef": {"name": "comp-train"},
                            "inputs": train_input,
                            "taskInfo": {"name": "train"},
                        }
                    }
                },
            },
        },
        "deploymentSpec": {
            "executors": {
                name: {"container": {"image": "registry.example/x:1"}}
                for name in ("exec-list-modules", "exec-train", "exec-report")
            }
        },
    }
    return spec, None


def _dag_outputs(outputs: dict[str, Any]) -> IR:
    """A condition sub-DAG ``comp-condition-branches-1`` with the given ``dag.outputs``."""
    spec, _ = _pipeline()
    spec["components"]["comp-condition-branches-1"] = {
        "dag": {"outputs": outputs, "tasks": {}},
    }
    return spec, None


def _oneof_artifacts(selectors: int) -> IR:
    chosen = [
        {"producerSubtask": f"branch-{i}", "outputArtifactKey": "adapter"} for i in range(selectors)
    ]
    artifact: dict[str, Any] = {"artifactSelectors": chosen} if chosen else {}
    return _dag_outputs({"artifacts": {"pipelinechannel--adapter": artifact}})


# -- one IR per backend feature, using that feature alone -----------------------------------------

FEATURE_EXAMPLES: list[tuple[str, str, Callable[[], IR]]] = [
    (
        "node selector / tolerations from JSON parameters",
        "node selector JSON",
        lambda: _pipeline(
            root_parameters={"gpu_nodes": {"parameterType": "STRUCT"}},
            task={"inputs": {"parameters": {}}},
            k8s={"nodeSelector": {"nodeSelectorJson": _input("gpu_nodes")}},
        ),
    ),
    (
        "node selector / tolerations from JSON parameters",
        "toleration JSON",
        lambda: _pipeline(
            root_parameters={"gpu_tolerations": {"parameterType": "LIST"}},
            k8s={"tolerations": [{"tolerationJson": _input("gpu_tolerations")}]},
        ),
    ),
    (
        "secret and PVC names from parameters",
        "secret as env",
        lambda: _pipeline(
            root_parameters={"token_secret": _string("hf-token")},
            k8s={
                "secretAsEnv": [
                    {
                        "secretNameParameter": _input("token_secret"),
                        "keyToEnv": [{"secretKey": "token", "envVar": "HF_TOKEN"}],
                    }
                ]
            },
        ),
    ),
    (
        "secret and PVC names from parameters",
        "secret as volume",
        lambda: _pipeline(
            root_parameters={"token_secret": _string("hf-token")},
            k8s={
                "secretAsVolume": [
                    {"secretNameParameter": _input("token_secret"), "mountPath": "/secret"}
                ]
            },
        ),
    ),
    (
        "secret and PVC names from parameters",
        "PVC mount",
        lambda: _pipeline(
            root_parameters={"cache_pvc": _string("model-cache")},
            k8s={"pvcMount": [{"pvcNameParameter": _input("cache_pvc"), "mountPath": "/c"}]},
        ),
    ),
    (
        "image pull secrets (secretNameParameter)",
        "pull secret from a parameter",
        lambda: _pipeline(
            root_parameters={"pull_secret": _string("registry-login")},
            k8s={"imagePullSecret": [{"secretNameParameter": _input("pull_secret")}]},
        ),
    ),
    (
        "retry policy",
        "retry policy",
        lambda: _pipeline(task={"retryPolicy": {"maxRetryCount": 3, "backoffDuration": "60s"}}),
    ),
    (
        "ParallelFor parallelism limit",
        "bounded loop",
        lambda: _bounded_loop(2),
    ),
    (
        "artifacts collected from a ParallelFor",
        "collected from a parameter loop",
        lambda: _loop_pipeline(),
    ),
    (
        "artifacts collected from a ParallelFor",
        "collected from an artifact loop",
        lambda: _loop_pipeline(iterator="artifactIterator"),
    ),
    (
        "empty dict or list parameter defaults",
        "empty dict default",
        lambda: _pipeline(
            root_parameters={"extra": {"parameterType": "STRUCT", "defaultValue": {}}}
        ),
    ),
    (
        "empty dict or list parameter defaults",
        "empty list default",
        lambda: _pipeline(root_parameters={"extra": {"parameterType": "LIST", "defaultValue": []}}),
    ),
    (
        "optional secret as environment variable",
        "optional constant secret",
        lambda: _pipeline(
            k8s={
                "secretAsEnv": [
                    {
                        "secretName": "hf-token",
                        "optional": True,
                        "keyToEnv": [{"secretKey": "token", "envVar": "HF_TOKEN"}],
                    }
                ]
            }
        ),
    ),
    (
        "dsl.OneOf over parameters",
        "parameter OneOf",
        lambda: _dag_outputs(
            {
                "parameters": {
                    "pipelinechannel--adapter": {
                        "valueFromOneof": {
                            "parameterSelectors": [
                                {"producerSubtask": "raft", "outputParameterKey": "Output"},
                                {"producerSubtask": "raft-off", "outputParameterKey": "Output"},
                            ]
                        }
                    }
                }
            }
        ),
    ),
    (
        "dsl.OneOf over artifacts",
        "artifact OneOf",
        lambda: _oneof_artifacts(2),
    ),
]


def _bounded_loop(limit: int) -> IR:
    """The loop pipeline without the collected artifact (report reads nothing from the loop)."""
    spec, platform = _loop_pipeline()
    spec["root"]["dag"]["tasks"]["report"]["inputs"] = {}
    spec["root"]["dag"]["tasks"]["for-loop-1"]["iteratorPolicy"] = {"parallelismLimit": limit}
    return spec, platform


def _release_below(floor: tuple[int, int]) -> str:
    return f"{floor[0]}.{floor[1] - 1}.9"


def test_every_feature_has_a_floor_and_an_example() -> None:
    """A feature added to the table needs its release checked and an IR below."""
    assert set(FEATURE_VERSIONS) == set(FLOORS), (
        "backend_rules.FEATURE_VERSIONS lost or gained a feature"
    )
    covered = {feature for feature, _, _ in FEATURE_EXAMPLES}
    assert covered == set(FLOORS), f"no example IR for {sorted(set(FLOORS) - covered)}"


@pytest.mark.parametrize(
    ("feature", "build"),
    [(feature, build) for feature, _, build in FEATURE_EXAMPLES],
    ids=[label for _, label, _ in FEATURE_EXAMPLES],
)
def test_each_feature_sets_the_backend_floor_at_its_first_release(
    feature: str, build: Callable[[], IR]
) -> None:
    ir = build()
    assert check_pipeline(*ir) == [], f"the {feature} example is meant to be valid IR"
    found = used_features(*ir)
    assert found == {feature}, f"the IR uses {feature} and nothing else; the checker saw {found}"
    floor = FLOORS[feature]
    required = required_backend_version(*ir)
    assert required == floor, (
        f"{feature} first works in KFP {floor[0]}.{floor[1]}, the checker asks for "
        f"{required[0]}.{required[1]}"
    )
    below = check_kfp_version(_release_below(floor), required)
    assert below.level == "fail", f"KFP {_release_below(floor)} lacks {feature} but was accepted"
    at_floor = check_kfp_version(f"{floor[0]}.{floor[1]}.0", required)
    assert at_floor.level == "ok", f"KFP {floor[0]}.{floor[1]}.0 has {feature} but was refused"


def test_a_pipeline_without_backend_features_runs_on_every_v2_backend() -> None:
    ir = _pipeline(task={"iteratorPolicy": {"parallelismLimit": 0}})
    assert used_features(*ir) == set(), "an unbounded (0) parallelism limit is no limit"
    required = required_backend_version(*ir)
    assert required == (2, 0), f"a pipeline using no backend feature was given floor {required}"
    assert check_kfp_version("2.0.0", required).level == "ok", "KFP 2.0.0 refused a plain pipeline"


@pytest.mark.parametrize("selectors", [0, 1])
def test_a_dag_output_with_one_source_is_no_oneof(selectors: int) -> None:
    assert "dsl.OneOf over artifacts" not in used_features(*_oneof_artifacts(selectors)), (
        f"a DAG output artifact with {selectors} selector(s) is not a dsl.OneOf"
    )


def test_a_root_task_reading_a_plain_task_artifact_is_no_collection() -> None:
    spec, platform = _loop_pipeline()
    report = spec["root"]["dag"]["tasks"]["report"]
    report["inputs"]["artifacts"]["summaries"]["taskOutputArtifact"]["producerTask"] = (
        "list-modules"
    )
    assert "artifacts collected from a ParallelFor" not in used_features(spec, platform), (
        "an artifact of a task outside any loop was counted as collected from a ParallelFor"
    )


# -- the driver's rules on IR the committed pipeline does not exercise ---------------------------


def _expect(
    ir: tuple[dict[str, Any], dict[str, Any] | None], expected: list[str], why: str
) -> None:
    problems = check_pipeline(*ir)
    assert problems == expected, f"{why}: the checker reported {problems}"


@pytest.mark.parametrize(
    ("value", "kind"),
    [(True, "BOOLEAN"), (2, "NUMBER"), (0.5, "NUMBER"), ("gpu", "STRING"), (["gpu"], "LIST")],
)
def test_a_constant_node_selector_of_the_wrong_type_is_found(value: Any, kind: str) -> None:
    """``resolveK8sJsonParameter`` needs a STRUCT for a node selector, whatever its source."""
    _expect(
        _pipeline(k8s={"nodeSelector": {"nodeSelectorJson": _constant(value)}}),
        [f"root/train: node selector is of type {kind}; the driver needs STRUCT"],
        f"a constant node selector {value!r} is a {kind}, not a STRUCT",
    )


@pytest.mark.parametrize("value", [{"gpu": "a100"}, [{"key": "gpu", "operator": "Exists"}]])
def test_constant_json_of_the_right_type_passes(value: Any) -> None:
    toleration = _pipeline(k8s={"tolerations": [{"tolerationJson": _constant(value)}]})
    _expect(toleration, [], f"a toleration may be a STRUCT or a LIST, {value!r} was refused")
    if isinstance(value, dict):
        selector = _pipeline(k8s={"nodeSelector": {"nodeSelectorJson": _constant(value)}})
        _expect(selector, [], f"a STRUCT node selector {value!r} was refused")


def test_tolerations_given_as_fields_sit_beside_json_ones() -> None:
    """A literal toleration (key/operator/effect) has no parameter; a JSON one beside it is still
    resolved against the DAG."""
    literal = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    _expect(
        _pipeline(k8s={"tolerations": [literal, {"tolerationJson": _input("gpu_tolerations")}]}),
        [
            "root/train: toleration reads 'gpu_tolerations', which the enclosing DAG root does "
            "not declare (driver: parent DAG does not have input parameter)"
        ],
        "a toleration JSON parameter the DAG lacks, beside a literal toleration",
    )
    _expect(_pipeline(k8s={"tolerations": [literal]}), [], "a literal toleration alone")


@pytest.mark.parametrize(("constant", "valid"), [(1, False), ("1", True)])
def test_a_constant_accelerator_count_must_be_a_string(constant: Any, valid: bool) -> None:
    """``resolvePodSpecInputRuntimeParameter`` reads the value with ``GetStringValue``."""
    count = "{{$.inputs.parameters['gpus']}}"
    ir = _pipeline(
        task={"inputs": {"parameters": {"gpus": _constant(constant)}}},
        resources={"accelerator": {"resourceType": "nvidia.com/gpu", "resourceCount": count}},
    )
    problem = (
        "root/train: accelerator count reads 'gpus' of type NUMBER; the driver reads it as a "
        "string (GetStringValue) and gets an empty value"
    )
    _expect(ir, [] if valid else [problem], f"accelerator count from constant {constant!r}")


def test_a_struct_parameter_in_a_resource_field_is_found() -> None:
    """Any non-STRING type reads as "", STRUCT included (it sorts after STRING)."""
    ir = _pipeline(
        root_parameters={"memory": {"parameterType": "STRUCT"}},
        task={"inputs": {"parameters": {"memory": _input("memory")}}},
        resources={"resourceMemoryLimit": "{{$.inputs.parameters['memory']}}"},
    )
    problem = (
        "root/train: resourceMemoryLimit reads 'memory' of type STRUCT; the driver reads it as a "
        "string (GetStringValue) and gets an empty value"
    )
    _expect(ir, [problem], "a memory limit read from a STRUCT parameter")


def test_a_placeholder_whose_type_the_ir_does_not_say_passes() -> None:
    """A task output's type is not in the consumer's IR: nothing to refuse."""
    output = {"taskOutputParameter": {"producerTask": "train", "outputParameterKey": "o"}}
    ir = _pipeline(
        task={"inputs": {"parameters": {"gpu_type": output}}},
        resources={"accelerator": {"resourceType": "{{$.inputs.parameters['gpu_type']}}"}},
    )
    _expect(ir, [], "an accelerator type from a task output (type unknown) was refused")


def test_every_placeholder_of_a_field_is_checked() -> None:
    """A missing first placeholder does not hide a wrongly typed second one."""
    ir = _pipeline(
        image="{{$.inputs.parameters['registry']}}/train:{{$.inputs.parameters['tag']}}",
        task={"inputs": {"parameters": {"tag": _constant(7)}}},
    )
    expected = [
        "root/train: image reads 'registry', which is not an input of the task",
        "root/train: image reads 'tag' of type NUMBER; the driver reads it as a string "
        "(GetStringValue) and gets an empty value",
    ]
    _expect(ir, expected, "both placeholders of the image are wrong")


def test_a_secret_name_without_a_default_is_left_to_the_submitter() -> None:
    """A required root parameter has no default to refuse; submit checks the value given."""
    ir = _pipeline(
        root_parameters={"token_secret": _string()},
        k8s={"secretAsVolume": [{"secretNameParameter": _input("token_secret")}]},
    )
    _expect(ir, [], "a secret name parameter without a default")


def test_a_secret_name_with_a_dot_is_valid() -> None:
    """Secret names are DNS-1123 subdomains and a Secret is not mounted under its own name: the
    PVC's volume-name rule does not apply to it."""
    ir = _pipeline(
        root_parameters={"token_secret": _string("hf.token")},
        k8s={"secretAsEnv": [{"secretNameParameter": _input("token_secret")}]},
    )
    _expect(ir, [], "secret name 'hf.token' held to the PVC volume-name rule")


def test_a_node_selector_default_is_not_read_as_a_name() -> None:
    ir = _pipeline(
        root_parameters={
            "gpu_nodes": {"parameterType": "STRUCT", "defaultValue": {"pool": "gpu.a100"}}
        },
        k8s={"nodeSelector": {"nodeSelectorJson": _input("gpu_nodes")}},
    )
    _expect(ir, [], "a node selector default held to the name rules")


@pytest.mark.parametrize(
    ("what", "config", "problem"),
    [
        (
            "secret name",
            {"secretAsEnv": [{"secretNameParameter": _constant("")}]},
            "secret name defaults to an empty string; Kubernetes refuses the pod",
        ),
        (
            "PVC name",
            {"pvcMount": [{"pvcNameParameter": _constant("")}]},
            "PVC name defaults to an empty string; Kubernetes refuses the pod",
        ),
        (
            "PVC name",
            {"pvcMount": [{"pvcNameParameter": _constant("cache.v2")}]},
            "must be a DNS-1123 label",
        ),
    ],
)
def test_constant_names_are_checked_like_defaults(what: str, config: dict, problem: str) -> None:
    problems = check_pipeline(*_pipeline(k8s=config))
    assert len(problems) == 1 and problem in problems[0], (
        f"a constant {what} should give '{problem}', the checker reported {problems}"
    )


@pytest.mark.parametrize(("length", "valid"), [(63, True), (64, False)])
def test_a_pvc_name_may_be_63_characters_long(length: int, valid: bool) -> None:
    """A pod volume name is a DNS-1123 label: at most 63 characters."""
    name = "c" * length
    problems = check_pipeline(*_pipeline(k8s={"pvcMount": [{"pvcNameParameter": _constant(name)}]}))
    assert (problems == []) is valid, f"PVC name of {length} characters: {problems}"


def test_a_dependency_outside_the_dag_is_found() -> None:
    _expect(
        _pipeline(task={"dependentTasks": ["fetch"]}),
        ["root/train: depends on 'fetch', which is not a task of this DAG"],
        "a task depending on a task its DAG does not hold",
    )


def test_a_condition_reading_what_the_task_does_not_take_is_found() -> None:
    """The driver evaluates ``triggerPolicy.condition`` over the task's own inputs."""
    condition = "inputs.parameter_values['pipelinechannel--raft'] == true"
    _expect(
        _pipeline(task={"triggerPolicy": {"condition": condition}}),
        ["root/train: condition reads 'pipelinechannel--raft', which is not an input of the task"],
        "a condition over a parameter the task does not take",
    )
    fixed = _pipeline(
        root_parameters={"raft": {"parameterType": "BOOLEAN"}},
        task={
            "triggerPolicy": {"condition": condition},
            "inputs": {"parameters": {"pipelinechannel--raft": _input("raft")}},
        },
    )
    _expect(fixed, [], "a condition over one of the task's inputs")


@pytest.mark.parametrize("iterator", ["parameterIterator", "artifactIterator"])
def test_loop_items_must_be_an_input_of_the_loop_task(iterator: str) -> None:
    _expect(_loop_pipeline(iterator=iterator), [], f"a valid {iterator} loop")
    broken = _loop_pipeline(iterator=iterator, loop_inputs={"parameters": {}, "artifacts": {}})
    items = "modules" if iterator == "artifactIterator" else "Output"
    expected = [
        f"root/for-loop-1: loop items 'pipelinechannel--list-modules-{items}' are not an input "
        "of the loop task"
    ]
    _expect(broken, expected, f"a {iterator} loop over items it does not take as input")


def test_an_artifact_the_loop_dag_does_not_declare_is_found() -> None:
    spec, platform = _loop_pipeline(iterator="artifactIterator")
    del spec["components"]["comp-for-loop-1"]["inputDefinitions"]["artifacts"][
        "pipelinechannel--list-modules-Output-loop-item"
    ]
    expected = [
        "comp-for-loop-1/train: artifact module reads "
        "'pipelinechannel--list-modules-Output-loop-item', which the enclosing DAG "
        "comp-for-loop-1 does not declare (driver: parent DAG does not have input parameter)"
    ]
    _expect((spec, platform), expected, "a loop-item artifact the loop DAG does not declare")
