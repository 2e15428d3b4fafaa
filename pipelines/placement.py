"""Where tasks run on a cluster: GPU placement, resources, retries, secrets and caches.

Kubernetes settings are ignored by ``kfp.local``; tests assert them on the compiled YAML and
``monGARS.pipelines.backend_rules`` reads them the way the KFP driver does.

The accelerator (resource name and count) is fixed when the pipeline is compiled: the driver
resolves an accelerator placeholder only from the task's own string inputs, and the SDK does not
carry accelerator channels into loop sub-DAGs, so a pipeline parameter there stops the run on a
cluster. Which GPU pool a run lands on is chosen at run time by ``gpu_node_selector`` and
``gpu_tolerations``, which the backend resolves from any DAG.
"""

from __future__ import annotations

from kfp import dsl, kubernetes

GPU_STAGES = ("sft", "llm2vec", "raft")

# Requests/limits per stage: (cpu request, cpu limit, memory request, memory limit). Sized for a
# 7B QLoRA run on one GPU; the CPU stages stream data and stay small.
RESOURCES: dict[str, tuple[str, str, str, str]] = {
    "resolve_sources": ("250m", "1", "512M", "2G"),
    "raft_off": ("100m", "500m", "256M", "1G"),
    "fetch_base_model": ("1", "2", "4G", "16G"),
    # build_datasets cleans on one worker process per CPU of its limit (DatasetsConfig.workers=0
    # reads the cgroup limit): request = limit, so every worker has a guaranteed CPU.
    # docs/datasets.md "Throughput and sizing" gives the time per million records per size.
    "build_datasets": ("4", "4", "4G", "16G"),
    "sft": ("4", "8", "32G", "64G"),
    "llm2vec": ("4", "8", "32G", "64G"),
    "raft": ("4", "8", "32G", "64G"),
    "merge_adapter": ("4", "8", "32G", "96G"),
    "export": ("4", "8", "32G", "96G"),
    # evaluate holds one model at a time: a GGUF in llama.cpp, then the merged HF model in f32
    # (28 GB for a 7B model).
    "evaluate": ("4", "8", "32G", "64G"),
    # promote re-scores each champion GGUF and uploads the promoted bundles.
    "promote": ("2", "4", "8G", "32G"),
    "report": ("500m", "1", "1G", "2G"),
}

HF_TOKEN_SECRET_KEY = "token"
HF_TOKEN_ENV = "HF_TOKEN"
MODEL_CACHE_MOUNT = "/var/cache/mongars"
SHM_MOUNT = "/dev/shm"
GPU_RETRIES = 3


def set_resources(task: dsl.PipelineTask, stage: str, ranks: int = 1) -> None:
    """CPU and memory of ``stage``'s task; a GPU task with N GPUs trains as N processes, one per
    GPU (docs/sft.md, "Several GPUs"), each loading its own copy of the model: N times the
    one-GPU figures."""
    cpu_request, cpu_limit, memory_request, memory_limit = (
        _times(quantity, ranks) for quantity in RESOURCES[stage]
    )
    task.set_cpu_request(cpu_request).set_cpu_limit(cpu_limit)
    task.set_memory_request(memory_request).set_memory_limit(memory_limit)


def _times(quantity: str, factor: int) -> str:
    """A quantity with a plain or unit suffix (``m``, ``M``, ``G``...), multiplied: ``32G`` x 2 =
    ``64G``."""
    number = quantity.rstrip("kKmMGTPEi")
    return f"{int(number) * factor}{quantity[len(number) :]}"


def use_image_pull_secrets(task: dsl.PipelineTask, secret_names: tuple[str, ...]) -> None:
    """Pull the images from a private registry with these ``dockerconfigjson`` Secrets."""
    if secret_names:
        kubernetes.set_image_pull_secrets(task, list(secret_names))


def place_on_gpu(
    task: dsl.PipelineTask,
    accelerator_type: str,
    accelerator_count: int,
    node_selector: dsl.PipelineParameterChannel,
    tolerations: dsl.PipelineParameterChannel,
    retry_window_hours: int,
) -> None:
    """GPU node pool, accelerator limit, shared memory for data loaders, retries on preemption.

    A retried task restarts with the same inputs, so sft resumes from its checkpoints on the
    shared cache volume (``use_shared_cache``).

    The retry window is the whole stage's budget, not a pause between tries: KFP's compiler turns
    ``backoffMaxDuration`` into Argo's ``Backoff.MaxDuration`` (kubeflow/pipelines
    ``backend/src/v2/compiler/argocompiler/container.go: getTaskRetryStrategyFromInput``), and
    Argo (``workflow/controller/operator.go: processNodeRetries``, v3.7) measures it from the
    *first* attempt's ``StartedAt``, refuses a retry past it ("Max duration limit exceeded") and
    sets it as the retry pod's ``executionDeadline``. One hour would never retry a training that
    failed after an hour, and would kill a retry at first start + 1 h.

    Argo retries only Failed nodes here: the IR's ``RetryPolicy`` has no retry-on field, the
    compiler sets no ``retryPolicy``, so Argo's default ``OnFailure`` applies and a pod deleted by
    a node drain (node phase Error, "pod deleted") is not retried. docs/cluster.md says how to
    recover (re-submission resumes from the checkpoints).
    """
    task.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerator_count)
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path=SHM_MOUNT, medium="Memory", size_limit="16Gi"
    )
    task.set_retry(
        num_retries=GPU_RETRIES,
        backoff_duration="60s",
        backoff_factor=2.0,
        backoff_max_duration=f"{retry_window_hours}h",
    )


def use_hf_token(task: dsl.PipelineTask, secret_name: dsl.PipelineParameterChannel) -> None:
    """HF token from a Kubernetes Secret as ``HF_TOKEN``; optional so public models still work."""
    kubernetes.use_secret_as_env(
        task,
        secret_name=secret_name,
        secret_key_to_env={HF_TOKEN_SECRET_KEY: HF_TOKEN_ENV},
        optional=True,
    )


def use_shared_cache(task: dsl.PipelineTask, pvc_name: dsl.PipelineParameterChannel) -> None:
    """Mount the shared cache PVC (base models fetched once, checkpoints that outlive a pod).

    A fixed, named PVC keeps the task's cache key stable across runs (a per-run PVC would not);
    it must be ReadWriteMany when modules train on several nodes at once.
    """
    kubernetes.mount_pvc(task, pvc_name=pvc_name, mount_path=MODEL_CACHE_MOUNT)
