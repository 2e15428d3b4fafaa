"""What a real KFP backend does with the compiled pipeline (issue 22), asserted on the IR.

Each test restates a rule read in the backend's source (kubeflow/pipelines 2.15.0, Argo Workflows
v3.7.3) and checks the compiled YAML keeps it; the docstrings name the file and function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from monGARS.pipelines.backend_rules import required_backend_version, used_features
from monGARS.pipelines.compile import compile_pipeline, retry_window_problems
from monGARS.pipelines.options import PipelineOptions

GPU_STAGES = {"sft", "llm2vec", "raft"}


def _compile(path: Path, options: PipelineOptions | None = None) -> tuple[dict, dict]:
    text = compile_pipeline(path, options).read_text(encoding="utf-8")
    spec, platform = list(yaml.safe_load_all(text))
    return spec, platform


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    return _compile(tmp_path_factory.mktemp("ir") / "mongars.yaml")


def _dags(spec: dict) -> dict[str, dict]:
    dags = {"root": spec["root"]}
    dags.update({name: c for name, c in spec["components"].items() if "dag" in c})
    return dags


def _task_scopes(spec: dict) -> dict[str, tuple[str, dict]]:
    """Every task name -> (the DAG component holding it, the task)."""
    return {
        name: (dag_name, task)
        for dag_name, dag in _dags(spec).items()
        for name, task in dag["dag"]["tasks"].items()
    }


def _executor(spec: dict, task: dict) -> dict[str, Any]:
    label = spec["components"][task["componentRef"]["name"]].get("executorLabel")
    return spec["deploymentSpec"]["executors"].get(label, {}).get("container", {})


def _asks_for_gpu(spec: dict, task: dict) -> bool:
    return "accelerator" in _executor(spec, task).get("resources", {})


# -- 1. long GPU tasks survive preemption ----------------------------------------------------


def test_gpu_retries_cover_multi_hour_training(compiled, tmp_path: Path) -> None:
    """Argo counts ``Backoff.MaxDuration`` from the first attempt's start and uses it as the
    retry's deadline (argo-workflows v3.7.3 ``workflow/controller/operator.go:
    processNodeRetries``); KFP passes ``backoffMaxDuration`` through unchanged
    (``argocompiler/container.go: getTaskRetryStrategyFromInput``). So the window must span the
    whole stage: 72 h by default, set at compile time."""
    spec, _ = compiled
    retried = {
        name: task["retryPolicy"]
        for name, (_, task) in _task_scopes(spec).items()
        if "retryPolicy" in task
    }
    assert set(retried) == GPU_STAGES
    for name, retry in retried.items():
        assert retry["backoffMaxDuration"] == f"{72 * 3600}s", name
        assert retry["maxRetryCount"] == 3 and retry["backoffDuration"] == "60s", name
    shorter, _ = _compile(tmp_path / "12h.yaml", PipelineOptions(gpu_retry_window_hours=12))
    windows = {
        task["retryPolicy"]["backoffMaxDuration"]
        for _, task in _task_scopes(shorter).values()
        if "retryPolicy" in task
    }
    assert windows == {f"{12 * 3600}s"}


def test_a_capped_retry_window_is_refused_at_compile_time(compiled) -> None:
    """An SDK before 2.17 writes at most 3600 s (``structures.py: RetryPolicy.to_proto``)."""
    spec, _ = compiled
    assert retry_window_problems(spec, 72) == []
    capped = yaml.safe_load(yaml.safe_dump(spec))
    for _, task in _task_scopes(capped).values():
        if "retryPolicy" in task:
            task["retryPolicy"]["backoffMaxDuration"] = "3600s"
    problems = retry_window_problems(capped, 72)
    assert len(problems) == 3 and all("kfp>=2.17" in p for p in problems)


def test_retry_window_option_is_checked() -> None:
    assert PipelineOptions(gpu_retry_window_hours=0).problems()
    assert PipelineOptions(gpu_retry_window_hours=True).problems()  # type: ignore[arg-type]
    assert not PipelineOptions(gpu_retry_window_hours=720).problems()


# -- 2. no task downloads what it does not read ----------------------------------------------


def test_report_takes_only_small_stage_summaries(compiled) -> None:
    """The v2 launcher downloads every input artifact, each item of a collected list too
    (``backend/src/v2/component/launcher_v2.go: downloadArtifacts``): the report's inputs must be
    the stages' JSON summaries and promote's decision record (``promotion.json``), never models,
    encoders, GGUF bundles or datasets."""
    spec, _ = compiled
    _, report = _task_scopes(spec)["report"]
    component = spec["components"][report["componentRef"]["name"]]
    declared = component["inputDefinitions"]["artifacts"]
    assert {a["artifactType"]["schemaTitle"] for a in declared.values()} == {"system.Artifact"}
    for name, source in report["inputs"]["artifacts"].items():
        output = source["taskOutputArtifact"]
        key = output["outputArtifactKey"]
        if name == "promotion":
            assert (output["producerTask"], key) == ("promote", "promotion")
            continue
        assert key == "stage_summary" or key.endswith("-stage_summary"), (name, key)
    assert set(report["inputs"]["artifacts"]) == {
        "datasets_summary",
        "sft_summaries",
        "llm2vec_summaries",
        "export_summaries",
        "evaluation_summaries",
        "promotion",
    }


# -- 5. external inputs reach the cache key ---------------------------------------------------


def test_resolved_revisions_feed_the_cached_stages(compiled) -> None:
    """The cache key holds parameters by value (``cacheutils/cache.go: GenerateCacheKey``): an
    uncached resolve task's output *parameters* feed fetch and build_datasets, so an unchanged
    revision keeps every downstream cache hit and a moved one re-runs its readers."""
    spec, _ = compiled
    tasks = _task_scopes(spec)
    _, resolve = tasks["resolve-sources"]
    assert resolve["cachingOptions"].get("enableCache") is not True
    assert not resolve.get("inputs", {}).get("artifacts")
    wiring = {
        "build-datasets": ("source_revisions", "dataset_revisions"),
        "fetch-base-model": ("revision", "base_model_revision"),
    }
    for name, (parameter, output) in wiring.items():
        _, task = tasks[name]
        assert task["cachingOptions"]["enableCache"] is True
        assert task["inputs"]["parameters"][parameter] == {
            "taskOutputParameter": {"outputParameterKey": output, "producerTask": "resolve-sources"}
        }, name


# -- 10. raft=false holds no GPU --------------------------------------------------------------


def test_raft_off_schedules_no_gpu_task(compiled) -> None:
    """raft's GPU task sits in a condition on ``raft``; the other branch and merge are CPU only;
    merge reads raft's adapter through a parameter ``dsl.OneOf``, which 2.15's driver resolves to
    the branch that ran (``driver/resolve.go: GetProducerTask``, ValueFromOneof: COMPLETE or
    CACHED, a skipped condition is CANCELED) — unlike an artifact OneOf before 2.17."""
    spec, platform = compiled
    tasks = _task_scopes(spec)
    dags = _dags(spec)
    parent_of = {
        task["componentRef"]["name"]: (dag_name, name)
        for dag_name, dag in dags.items()
        for name, task in dag["dag"]["tasks"].items()
    }
    raft_dag, raft = tasks["raft"]
    assert _asks_for_gpu(spec, raft)
    holder_dag, holder = parent_of[raft_dag]
    condition = dags[holder_dag]["dag"]["tasks"][holder]["triggerPolicy"]["condition"]
    assert "pipelinechannel--raft" in condition and "== true" in condition
    off_dag, off = tasks["raft-off"]
    assert not _asks_for_gpu(spec, off)
    assert (
        "!"
        in dags[parent_of[off_dag][0]]["dag"]["tasks"][parent_of[off_dag][1]]["triggerPolicy"][
            "condition"
        ]
    )
    # With raft off, the GPU tasks that run are those outside any condition: sft and llm2vec.
    unconditional_gpu = {
        name
        for name, (dag_name, task) in tasks.items()
        if _asks_for_gpu(spec, task) and not dag_name.startswith("comp-condition")
    }
    assert unconditional_gpu == {"sft", "llm2vec"}
    loop_dag, merge = tasks["merge-adapter"]
    assert not _asks_for_gpu(spec, merge)
    assert merge["inputs"]["artifacts"]["adapter"]["taskOutputArtifact"]["producerTask"] == "sft"
    producer = merge["inputs"]["parameters"]["raft_adapter"]["taskOutputParameter"]["producerTask"]
    oneof = next(
        iter(
            dags[parent_of_task(dags, loop_dag, producer)]["dag"]["outputs"]["parameters"].values()
        )
    )
    assert len(oneof["valueFromOneof"]["parameterSelectors"]) == 2
    features = used_features(spec, platform)
    assert "dsl.OneOf over parameters" in features and "dsl.OneOf over artifacts" not in features
    assert required_backend_version(spec, platform) == (2, 15)


def parent_of_task(dags: dict[str, dict], dag_name: str, task_name: str) -> str:
    return dags[dag_name]["dag"]["tasks"][task_name]["componentRef"]["name"]


# -- 13. private registries ---------------------------------------------------------------------


def test_image_pull_secrets_reach_every_pod(compiled, tmp_path: Path) -> None:
    """The driver adds ``imagePullSecret`` entries to the executor pod's spec
    (``backend/src/v2/driver/k8s.go: initPodSpecPatch``, since 2.5)."""
    _, platform = compiled
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert not any("imagePullSecret" in config for config in executors.values())
    spec, platform = _compile(
        tmp_path / "private.yaml", PipelineOptions(image_pull_secrets=("regcred", "mirror.io"))
    )
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(spec["deploymentSpec"]["executors"])
    for label, config in executors.items():
        assert [s["secretName"] for s in config["imagePullSecret"]] == ["regcred", "mirror.io"], (
            label
        )
    problems = PipelineOptions(image_pull_secrets=("Reg_Cred",)).problems()
    assert problems and "Reg_Cred" in problems[0]
