"""The compiled YAML read the way the KFP v2 backend's driver reads it.

The rules live in ``monGARS.pipelines.backend_rules``; each comes from kubeflow/pipelines'
``backend/src/v2/driver``:

* ``resolve.go: resolveInputs`` — a task's ``componentInputParameter``/``componentInputArtifact``
  must be declared by the DAG that holds the task ("parent DAG does not have input parameter"),
  and ``taskOutput*`` producers must be tasks of that same DAG.
* ``driver.go: initPodSpecPatch`` / ``resolvePodSpecInputRuntimeParameter`` — placeholders in the
  accelerator, cpu, memory and image fields are looked up among the task's own inputs and read
  with ``GetStringValue``, so they must be task inputs of STRING type.
* ``driver.go: extendPodSpecPatch`` (``resolveK8sJsonParameter``, ``resolveInputParameter``,
  ``resolveInputParameterStr``) — node selector and toleration JSON, secret and PVC names are
  resolved against the parent DAG's parameters, with STRUCT / STRUCT-or-LIST / STRING types.

``tests/data/mongars-before-backend-rules.yaml`` is the pipeline as compiled before this check
existed: it stopped at its first GPU task on a cluster, and the checker must say so.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from monGARS.pipelines.backend_rules import (
    FEATURE_VERSIONS,
    check_pipeline,
    parse_version,
    required_backend_version,
    used_features,
)
from monGARS.pipelines.compile import COMPILED_PIPELINE

BEFORE = Path(__file__).resolve().parents[1] / "data" / "mongars-before-backend-rules.yaml"
MINIMUM_BACKEND = (2, 15)
"""What README.md and docs/cluster.md state as the minimum KFP release."""


def _load(path: Path) -> tuple[dict, dict]:
    spec, platform = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    return spec, platform


@pytest.fixture(scope="module")
def committed() -> tuple[dict, dict]:
    return _load(COMPILED_PIPELINE)


def test_the_old_yaml_fails_where_the_driver_failed() -> None:
    problems = check_pipeline(*_load(BEFORE))
    undeclared = [p for p in problems if "does not declare" in p]
    # sft and llm2vec in the loop, raft in its condition: both accelerator channels each.
    assert {p.split(":")[0] for p in undeclared} == {
        "comp-for-loop-1/sft",
        "comp-for-loop-1/llm2vec",
        "comp-condition-3/raft",
    }
    assert any("pipelinechannel--gpu_limit" in p for p in undeclared)
    assert any("accelerator count" in p and "NUMBER_INTEGER" in p for p in problems)


def test_the_committed_yaml_passes(committed: tuple[dict, dict]) -> None:
    assert check_pipeline(*committed) == []


def _loop(spec: dict) -> dict:
    return spec["components"]["comp-for-loop-1"]


def test_an_undeclared_loop_input_is_found(committed: tuple[dict, dict]) -> None:
    spec, platform = copy.deepcopy(committed)
    del _loop(spec)["inputDefinitions"]["parameters"]["pipelinechannel--seed"]
    problems = check_pipeline(spec, platform)
    assert problems and all("pipelinechannel--seed" in p for p in problems)
    assert any(p.startswith("comp-for-loop-1/sft:") for p in problems)


def test_a_k8s_parameter_the_loop_lacks_is_found(committed: tuple[dict, dict]) -> None:
    spec, platform = copy.deepcopy(committed)
    del _loop(spec)["inputDefinitions"]["parameters"]["pipelinechannel--gpu_node_selector"]
    problems = check_pipeline(spec, platform)
    assert any("node selector reads 'pipelinechannel--gpu_node_selector'" in p for p in problems)


def test_a_producer_outside_the_dag_is_found(committed: tuple[dict, dict]) -> None:
    spec, platform = copy.deepcopy(committed)
    export = _loop(spec)["dag"]["tasks"]["export"]
    export["inputs"]["artifacts"]["chat_model"]["taskOutputArtifact"]["producerTask"] = "report"
    problems = check_pipeline(spec, platform)
    assert any("comes from 'report', which is not a task of comp-for-loop-1" in p for p in problems)


def test_an_integer_accelerator_count_is_found(committed: tuple[dict, dict]) -> None:
    spec, platform = copy.deepcopy(committed)
    sft = _loop(spec)["dag"]["tasks"]["sft"]
    sft["inputs"]["parameters"]["pipelinechannel--seed"] = {
        "componentInputParameter": "pipelinechannel--seed"
    }
    label = spec["components"]["comp-sft"]["executorLabel"]
    accelerator = spec["deploymentSpec"]["executors"][label]["container"]["resources"][
        "accelerator"
    ]
    accelerator["resourceCount"] = "{{$.inputs.parameters['pipelinechannel--seed']}}"
    problems = check_pipeline(spec, platform)
    assert any(
        "accelerator count reads 'pipelinechannel--seed' of type NUMBER_INTEGER" in p
        for p in problems
    )


def test_an_empty_secret_name_default_is_found(committed: tuple[dict, dict]) -> None:
    spec, platform = copy.deepcopy(committed)
    spec["root"]["inputDefinitions"]["parameters"]["hf_token_secret"]["defaultValue"] = ""
    problems = check_pipeline(spec, platform)
    assert problems and all("secret name defaults to an empty string" in p for p in problems)


@pytest.mark.parametrize("name", ["cache.v2", "x" * 64, "Cache"])
def test_a_pvc_default_the_pod_cannot_name_its_volume_after_is_found(
    committed: tuple[dict, dict], name: str
) -> None:
    """``driver/k8s.go: makeVolumeMountPatch``: the pod volume is named after the PVC, and pod
    volume names are DNS-1123 labels; a PVC may be a subdomain (with dots)."""
    spec, platform = copy.deepcopy(committed)
    spec["root"]["inputDefinitions"]["parameters"]["model_cache_pvc"]["defaultValue"] = name
    problems = check_pipeline(spec, platform)
    assert problems and all("must be a DNS-1123 label" in p for p in problems), problems
    assert not check_pipeline(*committed)


def test_gpu_tasks_request_constant_string_accelerators(committed: tuple[dict, dict]) -> None:
    spec, _ = committed
    for component in ("comp-sft", "comp-llm2vec", "comp-raft"):
        label = spec["components"][component]["executorLabel"]
        resources = spec["deploymentSpec"]["executors"][label]["container"]["resources"]
        accelerator = resources["accelerator"]
        # resourceType/resourceCount are what the driver reads; the SDK also writes the old fields.
        wanted = ("nvidia.com/gpu", "1")
        assert (accelerator["resourceType"], accelerator["resourceCount"]) == wanted


def test_minimum_backend_version(committed: tuple[dict, dict]) -> None:
    assert required_backend_version(*committed) == MINIMUM_BACKEND
    assert required_backend_version(*_load(BEFORE)) == (2, 17)
    assert "dsl.OneOf over artifacts" not in used_features(*committed)
    assert set(used_features(*committed)) <= set(FEATURE_VERSIONS)


def test_the_stated_minimum_is_in_the_docs() -> None:
    root = Path(__file__).resolve().parents[2]
    stated = f"{MINIMUM_BACKEND[0]}.{MINIMUM_BACKEND[1]}"
    for doc in ("README.md", "docs/cluster.md"):
        text = (root / doc).read_text(encoding="utf-8")
        assert f"Kubeflow Pipelines {stated}" in text, f"{doc} must state the minimum KFP release"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2.15.0", (2, 15, 0)), ("v2.4.1-rc.1", (2, 4, 1)), ("2.17", (2, 17, 0)), ("dev", None)],
)
def test_parse_version(text: str, expected: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == expected
