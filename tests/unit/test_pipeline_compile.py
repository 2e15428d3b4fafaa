"""The compiled pipeline YAML is a test subject: staleness, stages, placement, caching, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monGARS.components.images import ALL_IMAGES, CPU_IMAGE, GPU_IMAGE
from monGARS.pipelines.compile import COMPILED_PIPELINE, compile_pipeline, is_up_to_date

GPU_TASKS = {"sft", "llm2vec", "raft"}
ALL_TASKS = {
    "resolve-sources",
    "fetch-base-model",
    "build-datasets",
    "sft",
    "llm2vec",
    "raft",
    "raft-off",
    "merge-adapter",
    "export",
    "evaluate",
    "promote",
    "report",
}
GROUPS = {"for-loop-1", "condition-branches-2", "condition-3", "condition-4"}
# resolve_sources re-reads the outside world each run; promote reads and writes the champion
# registry, which outlives runs.
UNCACHED_TASKS = {"resolve-sources", "promote"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    path = compile_pipeline(tmp_path_factory.mktemp("yaml") / "mongars.yaml")
    spec, platform = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    return spec, platform


def _all_tasks(spec: dict) -> dict[str, dict]:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_committed_yaml_is_up_to_date() -> None:
    assert COMPILED_PIPELINE.is_file(), "run `make compile` and commit pipelines/mongars.yaml"
    assert is_up_to_date(COMPILED_PIPELINE), "pipelines/mongars.yaml is stale: run `make compile`"


def test_staleness_is_detected(tmp_path: Path) -> None:
    stale = tmp_path / "mongars.yaml"
    stale.write_text(COMPILED_PIPELINE.read_text(encoding="utf-8").replace("lora_r", "lora_q"))
    assert not is_up_to_date(stale)


def test_every_stage_is_in_the_pipeline(compiled: tuple[dict, dict]) -> None:
    spec, _ = compiled
    assert set(_all_tasks(spec)) == ALL_TASKS | GROUPS


def test_caching_is_enabled_on_every_task_but_the_uncached(compiled: tuple[dict, dict]) -> None:
    """resolve_sources and promote read what outlives runs; everything else resumes from cache."""
    spec, _ = compiled
    for name, task in _all_tasks(spec).items():
        if name in GROUPS:
            continue
        cached = task.get("cachingOptions", {}).get("enableCache") is True
        assert cached is (name not in UNCACHED_TASKS), name


def test_images_are_the_projects_own_and_versioned(compiled: tuple[dict, dict]) -> None:
    spec, _ = compiled
    images = {
        executor["container"]["image"] for executor in spec["deploymentSpec"]["executors"].values()
    }
    assert images == {CPU_IMAGE, GPU_IMAGE}
    assert images <= set(ALL_IMAGES.values())
    for executor in spec["deploymentSpec"]["executors"].values():
        command = " ".join(executor["container"]["command"])
        assert "pip install" not in command, "tasks must not pip-install at run time"


def test_gpu_tasks_are_placed_on_gpu_nodes(compiled: tuple[dict, dict]) -> None:
    spec, platform = compiled
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    tasks = _all_tasks(spec)
    for name in GPU_TASKS:
        executor_label = spec["components"][tasks[name]["componentRef"]["name"]]["executorLabel"]
        resources = executors[executor_label]["container"]["resources"]
        accelerator = resources["accelerator"]
        assert (accelerator["resourceType"], accelerator["resourceCount"]) == (
            "nvidia.com/gpu",
            "1",
        ), name
        settings = k8s[executor_label]
        assert "nodeSelector" in settings and "tolerations" in settings, name
        assert settings["secretAsEnv"][0]["keyToEnv"] == [
            {"envVar": "HF_TOKEN", "secretKey": "token"}
        ]
        assert settings["secretAsEnv"][0]["optional"] is True
        assert any(mount["mountPath"] == "/dev/shm" for mount in settings["emptyDirMounts"])
        retry = tasks[name]["retryPolicy"]
        assert retry["maxRetryCount"] == 3 and retry["backoffFactor"] == 2.0


def test_every_task_has_resource_requests_and_limits(compiled: tuple[dict, dict]) -> None:
    spec, _ = compiled
    for label, executor in spec["deploymentSpec"]["executors"].items():
        resources = executor["container"]["resources"]
        for key in ("cpuRequest", "cpuLimit", "memoryRequest", "memoryLimit"):
            assert key in resources, f"{label} lacks {key}"


def test_cpu_tasks_do_not_ask_for_gpus(compiled: tuple[dict, dict]) -> None:
    spec, _ = compiled
    cpu = {
        label: executor
        for label, executor in spec["deploymentSpec"]["executors"].items()
        if executor["container"]["image"] == CPU_IMAGE
    }
    assert len(cpu) >= 4, sorted(cpu)  # datasets, fetch, merge, export, report: never vacuous
    for label, executor in cpu.items():
        assert "accelerator" not in executor["container"]["resources"], label


def test_shared_cache_pvc_is_mounted_where_the_base_model_is_read(
    compiled: tuple[dict, dict],
) -> None:
    """fetch writes the base model to the PVC once; every task that reads it mounts the PVC."""
    from monGARS.mlops.shared_cache import CLUSTER_CACHE_DIR

    _, platform = compiled
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    # evaluate reads the base model and caches its GGUF conversion there; promote's default
    # registry is champions/ on the volume.
    readers = {"fetch-base-model", "sft", "llm2vec", "raft", "merge-adapter", "evaluate", "promote"}
    for name in readers:
        mounts = k8s[f"exec-{name}"]["pvcMount"]
        assert [m["mountPath"] for m in mounts] == [str(CLUSTER_CACHE_DIR)], name
        source = mounts[0]["pvcNameParameter"]
        assert source["componentInputParameter"].endswith("model_cache_pvc"), name
    others = {"resolve-sources", "build-datasets", "raft-off", "export", "report"}
    assert not any("pvcMount" in k8s.get(f"exec-{name}", {}) for name in others)


def test_base_model_travels_by_reference(compiled: tuple[dict, dict]) -> None:
    """No task but fetch produces the base model; readers get fetch's (small) reference."""
    spec, _ = compiled
    for name in ("sft", "llm2vec", "raft", "merge-adapter"):
        base = _all_tasks(spec)[name]["inputs"]["artifacts"]["base_model"]
        assert base == {"componentInputArtifact": "pipelinechannel--fetch-base-model-model"}


def test_fan_out_is_bounded(compiled: tuple[dict, dict]) -> None:
    spec, _ = compiled
    loop = spec["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["iteratorPolicy"] == {"parallelismLimit": 4}


def test_defaults_for_cluster_runs(compiled: tuple[dict, dict]) -> None:
    spec, _ = compiled
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["base_model"]["defaultValue"] == "mistralai/Mistral-7B-v0.2"
    assert inputs["raft"]["defaultValue"] is False
    assert inputs["quant_types"]["defaultValue"] == ["q8_0", "q4_k_m"]
    assert inputs["epochs"]["defaultValue"] == 3.0


def test_the_token_reaches_pods_only_through_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token in the compiling shell never lands in the YAML; no parameter or env value carries
    it: tasks get HF_TOKEN from the Secret named by hf_token_secret, and from nothing else."""
    known = "hf_CompileTimeTokenMustNotLeak0123456789"
    monkeypatch.setenv("HF_TOKEN", known)
    text = compile_pipeline(tmp_path / "mongars.yaml").read_text(encoding="utf-8")
    assert known not in text
    spec, platform = list(yaml.safe_load_all(text))
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert [name for name in parameters if "token" in name] == ["hf_token_secret"]
    for executor in spec["deploymentSpec"]["executors"].values():
        assert "HF_TOKEN" not in {env["name"] for env in executor["container"].get("env", [])}
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    with_secret = {label for label, config in k8s.items() if "secretAsEnv" in config}
    assert with_secret == {f"exec-{name}" for name in GPU_TASKS} | {
        "exec-build-datasets",
        "exec-fetch-base-model",
        "exec-resolve-sources",
    }


def test_several_gpus_get_cpu_and_memory_for_one_rank_each(tmp_path: Path) -> None:
    from monGARS.pipelines.options import PipelineOptions
    from monGARS.pipelines.placement import RESOURCES

    path = compile_pipeline(tmp_path / "two.yaml", PipelineOptions(accelerator_count=2))
    spec, _ = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    executors = spec["deploymentSpec"]["executors"]
    tasks = _all_tasks(spec)
    for name in (*GPU_TASKS, "export"):
        label = spec["components"][tasks[name]["componentRef"]["name"]]["executorLabel"]
        resources = executors[label]["container"]["resources"]
        _, cpu_limit, _, memory_limit = RESOURCES[name]
        ranks = 2 if name in GPU_TASKS else 1
        assert resources["cpuLimit"] == int(cpu_limit) * ranks, name
        assert resources["memoryLimit"] == int(memory_limit.rstrip("G")) * ranks, name  # in GB
        if name in GPU_TASKS:
            assert resources["accelerator"]["resourceCount"] == "2"
