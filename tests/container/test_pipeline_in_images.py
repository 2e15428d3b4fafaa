"""The whole pipeline in its own images, through kfp.local's DockerRunner (`make test-containers`).

build_datasets, fetch, merge, export and report run in mongars-runtime; sft, llm2vec and raft in
mongars-train-cuda (on CPU here: its own pins, its own imports). Every task runs as a non-root
user, with no network and a read-only root filesystem (tmpfs for /tmp, the caches and the working
folder). sft runs once through the hf backend and once through unsloth (its CPU fallback, opted in
with MONGARS_UNSLOTH_CPU=1). DockerRunner reports a container that vanished before ``wait()`` as
a success, so every check reads the artifacts the tasks wrote, never a task status alone.

Needs a Docker daemon and both images built with `make images` (tagged from components/images.py);
.ci/run starts the daemon and builds them on a fresh machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from monGARS.mlops.training.common.backends import UNSLOTH_CPU_ENV

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[2]
PROBES = Path(__file__).resolve().parent
MODULE = "platform"
# One module, few steps: the stages still do their real work, in the real images.
PARAMETERS: dict[str, Any] = {
    "datasets_config": {"module_map": ["*=platform"]},
    "max_steps": 10,
    "sft_config": {"eval_steps": 5, "save_steps": 5, "logging_steps": 1, "backend": "hf"},
    "llm2vec_config": {"mntp_steps": 6, "simcse_steps": 6, "supervised_steps": 6},
    "raft": True,
    "raft_config": {"max_steps": 4, "max_heldout_examples": 2},
}
# Everything offline: nothing may be fetched at task time (there is no network anyway).
TASK_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
TMPFS = "rw,exec,nosuid,mode=1777"


def _docker_client():
    try:
        import docker
    except ImportError:
        pytest.fail("the docker package is missing; make setup installs it (pyproject dev extra)")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        pytest.fail(f"no Docker daemon answers ({error}); start one: images/dockerd.sh start DIR")
    return client


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    from monGARS.components.images import ALL_IMAGES, CPU_IMAGE_NAME, GPU_IMAGE_NAME

    client = _docker_client()
    missing = []
    for ref in ALL_IMAGES.values():
        try:
            client.images.get(ref)
        except Exception:
            missing.append(ref)
    client.close()
    if missing:
        pytest.fail(f"images not built: {', '.join(missing)}; run make images")
    return {"cpu": ALL_IMAGES[CPU_IMAGE_NAME], "gpu": ALL_IMAGES[GPU_IMAGE_NAME]}


def _task_user() -> str | None:
    """The image's own user (uid 1000, group 0) when this process is root; else this uid, group 0.

    Either way a non-root uid in group 0, which the images make their caches writable for; the
    run folder is group-writable so it can write its artifacts there.
    """
    return None if os.getuid() == 0 else f"{os.getuid()}:0"


def _shared_cache(run_dir: Path) -> Path:
    """The run's stand-in for the cluster's shared cache PVC (``local_run`` makes it)."""
    from monGARS.deploy.local_run import SHARED_CACHE_DIRNAME

    folder = run_dir / SHARED_CACHE_DIRNAME
    folder.mkdir(mode=0o775, parents=True, exist_ok=True)
    return folder


def _container_arguments(run_dir: Path, **environment: str) -> dict[str, Any]:
    """What every container gets: as on a cluster, the shared cache volume at its mount path."""
    import docker

    from monGARS.mlops.shared_cache import CLUSTER_CACHE_DIR

    arguments: dict[str, Any] = {
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {path: TMPFS for path in ("/tmp", "/home/mongars", "/workspace")},
        "mounts": [
            docker.types.Mount(str(CLUSTER_CACHE_DIR), str(_shared_cache(run_dir)), type="bind")
        ],
        "environment": {**TASK_ENV, **environment},
    }
    if (user := _task_user()) is not None:
        arguments["user"] = user
    return arguments


def _runner(run_dir: Path, **environment: str):
    from kfp import local

    # DockerRunner also bind-mounts pipeline_root (same path) for the artifacts.
    return local.DockerRunner(**_container_arguments(run_dir, **environment))


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("container-runs")
    root.chmod(0o775)
    return root


def _run(runs_root: Path, run_id: str, parameters: dict, environment=None, **kwargs: Any):
    from monGARS.deploy.local_run import run_local

    run_dir = runs_root / run_id
    run_dir.mkdir(mode=0o775, exist_ok=True)
    previous = os.umask(0o002)  # folders kfp.local makes for the tasks: group 0 may write them
    try:
        return run_local(
            run_id,
            json.loads(json.dumps(parameters)),
            runs_root=runs_root,
            runner=_runner(run_dir.resolve(), **(environment or {})),
            **kwargs,
        )
    finally:
        os.umask(previous)


@pytest.fixture(scope="module")
def first_run(images: dict[str, str], runs_root: Path):
    return _run(runs_root, "c", PARAMETERS)


def test_every_stage_ran_and_wrote_its_artifacts(first_run) -> None:
    executed = set(first_run.executed)
    expected = {
        "build-datasets",
        "fetch-base-model",
        "sft",
        "llm2vec",
        "raft",
        "merge-adapter",
        "export",
        "report",
    }
    assert expected <= executed, f"not run: {expected - executed}"
    outputs = first_run.outputs
    datasets = Path(outputs["datasets"])
    assert list(json.loads((datasets / "modules.json").read_text())) == [MODULE]
    module = outputs["modules"][MODULE]
    assert (Path(module["sft_adapter"]) / "adapter" / "adapter_config.json").is_file()
    assert (Path(module["encoder"]) / "encoder.json").is_file()
    report = Path(outputs["report"]).read_text(encoding="utf-8")
    assert MODULE in report
    state = json.loads(first_run.state_file.read_text())
    assert state["history"][-1]["status"] == "succeeded"
    assert state["modules"][MODULE]["sft_adapter"] == module["sft_adapter"]


def test_artifacts_were_written_by_a_non_root_user(first_run) -> None:
    """Files the containers wrote belong to the task's uid, never to root."""
    expected_uid = 1000 if os.getuid() == 0 else os.getuid()
    written = [
        p for p in (first_run.run_dir / "kfp").rglob("*") if p.is_file() and p.suffix == ".gguf"
    ]
    assert written
    assert {p.stat().st_uid for p in written} == {expected_uid}


def test_gguf_files_were_verified_and_load_in_llama_cpp(first_run) -> None:
    from llama_cpp import Llama

    module = first_run.outputs["modules"][MODULE]
    bundle_dir = Path(module["gguf_bundle"])
    bundle = json.loads((bundle_dir / "bundle.json").read_text())
    verification = json.loads((bundle_dir / bundle["verification"]).read_text())
    assert bundle["verified"] is True
    for role in ("chat", "encoder"):
        for label, entry in bundle[role]["files"].items():
            assert entry["verified"], f"{role} {label} failed verification in the runtime image"
            assert verification["files"][entry["path"]]["passed"], entry["path"]
    names = {Path(p).name for p in module["gguf_files"]}
    assert {f"{MODULE}-chat-F16.gguf", f"{MODULE}-chat-Q4_K_M.gguf"} <= names
    chat = next(p for p in module["gguf_files"] if p.endswith("-chat-Q8_0.gguf"))
    llm = Llama(model_path=chat, n_ctx=256, verbose=False)
    try:
        out = llm("Bonjour", max_tokens=4, temperature=0.0)
    finally:
        llm.close()
    assert out["usage"]["completion_tokens"] >= 1


def _probe(images: dict[str, str], run_dir: Path, outputs: dict, artifact: str) -> dict:
    """probe_sft.py in the CUDA image, as its non-root user, without network."""
    import docker

    client = _docker_client()
    base = _artifact_dirs(run_dir, "fetch-base-model", "model")[0]
    arguments = _container_arguments(run_dir)
    arguments["mounts"] += [
        docker.types.Mount(str(run_dir), str(run_dir), type="bind", read_only=True),
        docker.types.Mount("/probe", str(PROBES), type="bind", read_only=True),
    ]
    command = ["python", "/probe/probe_sft.py", str(base), outputs["datasets"], artifact, MODULE]
    try:
        logs = client.containers.run(
            images["gpu"], command, remove=True, stdout=True, stderr=False, **arguments
        )
    finally:
        client.close()
    return json.loads(logs.decode().strip().splitlines()[-1])


def _artifact_dirs(run_dir: Path, task: str, output: str) -> list[Path]:
    """Folders of ``task``'s ``output`` artifact under the run's pipeline root, newest first."""
    found = [
        p for p in (run_dir / "kfp").rglob(output) if p.is_dir() and p.parent.name.startswith(task)
    ]
    assert found, f"no {task}/{output} artifact under {run_dir / 'kfp'}"
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _check_sft(images: dict[str, str], run, backend: str) -> None:
    artifact = Path(run.outputs["modules"][MODULE]["sft_adapter"])
    training = json.loads((artifact / "training_config.json").read_text())
    assert (training["backend"], training["device"]) == (backend, "cpu")
    metrics = json.loads((artifact / "metrics.json").read_text())
    assert metrics["steps"] == PARAMETERS["max_steps"]
    assert metrics["train_loss_last"] < metrics["train_loss_first"], metrics["loss_history"]
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    probe = _probe(images, run.run_dir, run.outputs, str(artifact))
    assert probe["assistant_only"], probe["mismatches"]
    assert probe["records_checked"] > 0 and 0 < probe["trained_fraction"] < 1
    assert probe["adapter_loads"] and probe["lora_b_tensors"] > 0
    assert probe["lora_b_nonzero"] and probe["logits_changed"]


def test_sft_hf_backend_in_the_cuda_image(images, first_run) -> None:
    _check_sft(images, first_run, "hf")


def test_raft_trained_on_top_of_sft(first_run) -> None:
    """raft=true: the raft task trained (held-out generations, a new adapter), not a copy."""
    (raft_dir,) = _artifact_dirs(first_run.run_dir, "raft", "adapter")
    sft_dir = Path(first_run.outputs["modules"][MODULE]["sft_adapter"])
    assert (raft_dir / "heldout_generations.jsonl").is_file()
    weights = "adapter/adapter_model.safetensors"
    assert (raft_dir / weights).read_bytes() != (sft_dir / weights).read_bytes()


def test_identical_rerun_is_served_from_the_cache(images, first_run, runs_root: Path) -> None:
    again = _run(runs_root, "c", PARAMETERS)
    # Never cached by design: resolve_sources re-reads the outside sources, promote re-reads the
    # champion registry; report follows promote's new artifact. Every training stage is a hit.
    assert set(again.executed) == {"resolve-sources", "promote", "report"}
    assert {"fetch-base-model", "build-datasets", "sft", "llm2vec", "raft", "export"} <= set(
        again.cached
    )
    same = {k: v for k, v in again.outputs.items() if k != "report"}
    assert same == {k: v for k, v in first_run.outputs.items() if k != "report"}
    state = json.loads(again.state_file.read_text())
    assert len(state["history"]) >= 2
    assert set(state["history"][-1]["executed_tasks"]) == set(again.executed)


def test_sft_unsloth_backend_on_its_cpu_fallback(images, first_run, runs_root: Path) -> None:
    parameters = {**PARAMETERS, "sft_config": {**PARAMETERS["sft_config"], "backend": "unsloth"}}
    run = _run(runs_root, "c", parameters, {UNSLOTH_CPU_ENV: "1"}, last_stage="sft")
    assert "sft" in run.executed
    _check_sft(images, run, "unsloth")
