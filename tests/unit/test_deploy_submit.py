"""``mongars submit`` end to end through kfp.Client against a local KFP v2beta1 API server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from deploy_servers import KfpState, kfp_server

from monGARS.deploy.cli import main

REPO = Path(__file__).resolve().parents[2]
TOKEN = "kfp-test-token-0123456789"


@pytest.fixture(scope="module")
def package_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    committed = REPO / "pipelines" / "mongars.yaml"
    if committed.is_file():
        return committed
    from monGARS.deploy.pipeline_package import compile_package

    return compile_package(tmp_path_factory.mktemp("pkg") / "mongars.yaml").path


@pytest.fixture
def kfp(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, KfpState]]:
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    with kfp_server() as (host, state):
        state.required_token = TOKEN
        yield host, state


def _submit(host: str, package: Path, *extra: str) -> int:
    return main(
        ["submit", "--host", host, "--package", str(package), "--poll-interval", "0.01", *extra]
    )


def test_run_is_created_with_typed_parameters_and_inline_spec(
    kfp: tuple[str, KfpState],
    package_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host, state = kfp
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"lora_r": 4, "raft": False, "languages": ["fr", "en"]}))
    code = _submit(
        host,
        package_path,
        "--run-name",
        "nightly-1",
        "--experiment",
        "mongars-ci",
        "--params-file",
        str(params_file),
        "--param",
        "raft=true",
        "--param",
        "lora_r=2",
        "--service-account",
        "mongars-pipeline-runner",
        "--pipeline-root",
        "gs://bucket/root",
    )
    assert code == 0
    (run,) = state.runs.values()
    assert run["display_name"] == "nightly-1"
    assert run["runtime_config"] == {
        "parameters": {"lora_r": 2, "raft": True, "languages": ["fr", "en"]},
        "pipeline_root": "gs://bucket/root",
    }
    assert run["service_account"] == "mongars-pipeline-runner"
    assert state.experiments[run["experiment_id"]]["display_name"] == "mongars-ci"
    spec = run["pipeline_spec"]
    assert spec["pipeline_spec"]["pipelineInfo"]["name"] == "mongars"
    assert "kubernetes" in json.dumps(spec["platform_spec"])  # placement travels with the run
    out = capsys.readouterr().out
    assert f"run {run['run_id']} created" in out
    assert TOKEN not in out
    assert all(header == f"Bearer {TOKEN}" for header in state.authorization)


def test_existing_experiment_is_reused(kfp: tuple[str, KfpState], package_path: Path) -> None:
    host, state = kfp
    assert _submit(host, package_path, "--run-name", "a") == 0
    assert _submit(host, package_path, "--run-name", "b") == 0
    assert len(state.experiments) == 1 and len(state.runs) == 2


def test_wait_reports_success(
    kfp: tuple[str, KfpState], package_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, state = kfp
    state.run_script = ["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"]
    assert _submit(host, package_path, "--wait") == 0
    out = capsys.readouterr().out
    assert "state: RUNNING" in out
    assert out.strip().endswith("finished: SUCCEEDED")


@pytest.mark.parametrize(("final", "code"), [("FAILED", 1), ("CANCELED", 1)])
def test_wait_exits_non_zero_when_the_run_does_not_succeed(
    kfp: tuple[str, KfpState],
    package_path: Path,
    capsys: pytest.CaptureFixture[str],
    final: str,
    code: int,
) -> None:
    host, state = kfp
    state.run_script = ["RUNNING", final]
    state.run_error = "task sft failed: CUDA out of memory"
    assert _submit(host, package_path, "--wait") == code
    out = capsys.readouterr().out
    assert f"finished: {final}" in out
    if final == "FAILED":
        assert "CUDA out of memory" in out


def test_wait_timeout_is_its_own_exit_code(kfp: tuple[str, KfpState], package_path: Path) -> None:
    host, state = kfp
    state.run_script = ["RUNNING"]
    assert _submit(host, package_path, "--wait", "--timeout", "0.05") == 3


def test_upload_creates_one_version_per_distinct_yaml(
    kfp: tuple[str, KfpState], package_path: Path, tmp_path: Path
) -> None:
    host, state = kfp
    for name in ("r1", "r2"):
        assert _submit(host, package_path, "--pipeline-name", "mongars", "--run-name", name) == 0
    assert len(state.pipelines) == 1
    versions_before = len(state.versions)
    edited = tmp_path / "edited.yaml"
    edited.write_text(package_path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert _submit(host, edited, "--pipeline-name", "mongars", "--run-name", "r3") == 0
    assert len(state.versions) == versions_before + 1
    runs = list(state.runs.values())
    references = [r["pipeline_version_reference"]["pipeline_version_id"] for r in runs]
    assert references[0] == references[1] != references[2]
    assert all("pipeline_spec" not in r for r in runs)


def test_wrong_token_is_a_one_line_error_without_the_token(
    kfp: tuple[str, KfpState],
    package_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host, state = kfp
    monkeypatch.setenv("KFP_TOKEN", "wrong-token-987654321")
    assert _submit(host, package_path) == 2
    captured = capsys.readouterr()
    assert "401" in captured.err and "KFP_TOKEN" in captured.err
    assert "wrong-token-987654321" not in captured.err + captured.out
    assert len(captured.err.strip().splitlines()) == 1
    assert not state.runs


def test_bad_parameters_fail_before_any_request(
    kfp: tuple[str, KfpState], package_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, state = kfp
    assert _submit(host, package_path, "--param", "lora_q=2") == 2
    assert "did you mean lora_r" in capsys.readouterr().err
    assert state.requests == []


@pytest.mark.parametrize("reported", ["2.14.0", "v2.5.0"])
def test_an_older_kfp_backend_is_refused_before_anything_is_created(
    kfp: tuple[str, KfpState],
    package_path: Path,
    capsys: pytest.CaptureFixture[str],
    reported: str,
) -> None:
    host, state = kfp
    state.server_version = reported
    assert _submit(host, package_path) == 2
    err = capsys.readouterr().err.strip()
    assert f"is {reported}; this pipeline needs 2.15 or newer" in err
    assert len(err.splitlines()) == 1
    assert not state.runs and not state.experiments


def test_a_backend_that_reports_no_release_is_not_refused(
    kfp: tuple[str, KfpState], package_path: Path
) -> None:
    host, state = kfp
    state.server_version = None
    assert _submit(host, package_path) == 0
    assert len(state.runs) == 1


def test_unreachable_host_is_a_one_line_error(
    package_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("KFP_TOKEN", raising=False)
    assert _submit(f"http://127.0.0.1:{port}", package_path) == 2
    err = capsys.readouterr().err
    assert "cannot reach Kubeflow Pipelines" in err and "port-forward" in err


def test_host_without_scheme_is_refused(
    package_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _submit("localhost:8888", package_path) == 2
    assert "--host" in capsys.readouterr().err


def test_without_package_the_pipeline_is_compiled_from_source(kfp: tuple[str, KfpState]) -> None:
    host, state = kfp
    assert main(["submit", "--host", host, "--run-name", "fresh"]) == 0
    (run,) = state.runs.values()
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "mongars"


def test_ci_uses_a_path_that_fails_with_the_run(
    kfp: tuple[str, KfpState], package_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Why CI runs ``mongars submit --wait``, not ``kfp run create --watch``: against a run that
    FAILS, the KFP CLI (kfp 2.17 ``cli/run.py: display_run``) prints the state and exits 0, and it
    has no service-account option; ``mongars submit --wait`` exits 1 and runs as the account."""
    import subprocess
    import sys

    host, state = kfp
    state.run_script = ["RUNNING", "FAILED"]
    state.run_error = "task sft failed: OOMKilled"
    kfp_cli = Path(sys.executable).parent / "kfp"
    command = [str(kfp_cli), "--endpoint", host, "--existing-token", TOKEN, "run", "create"]
    command += ["--experiment-name", "mongars", "--run-name", "ci-1"]
    command += ["--package-file", str(package_path), "--watch", "raft=true"]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert "Run is finished with state FAILED" in result.stdout
    assert result.returncode == 0  # the trap: a CI job would go green

    code = _submit(
        host,
        package_path,
        "--service-account",
        "mongars-pipeline-runner",
        "--run-name",
        "ci-2",
        "--wait",
        "--param",
        "raft=true",
    )
    assert code == 1
    assert "finished: FAILED (task sft failed: OOMKilled)" in capsys.readouterr().out
    run = next(r for r in state.runs.values() if r["display_name"] == "ci-2")
    assert run["service_account"] == "mongars-pipeline-runner"

    for doc in ("README.md", "docs/cluster.md"):
        text = (REPO / doc).read_text(encoding="utf-8")
        assert "run create" not in text or "exits 0" in text, f"{doc} gives kfp run create for CI"
        assert "--service-account mongars-pipeline-runner" in text and "--wait" in text


# --- issue 22: the namespace pods run in, caching off everywhere, refusals at submit ---------


def _cached_tasks(spec: dict) -> dict[str, bool]:
    """``dag/task`` -> enableCache, for every task of every DAG (the driver reads each one)."""
    from monGARS.deploy.pipeline_package import dag_tasks

    return {
        f"{dag}/{name}": bool((task.get("cachingOptions") or {}).get("enableCache"))
        for dag, name, task in dag_tasks(spec)
        if "componentRef" in task and not name.startswith("for-loop")
    }


def test_no_cache_reaches_every_task_inline_and_by_pipeline_name(
    kfp: tuple[str, KfpState], package_path: Path
) -> None:
    """kfp 2.17 ``client.py: _override_caching_options`` touches only ``root.dag.tasks`` and only
    for an inline package: with it, sft/llm2vec/raft/merge/export (in the ParallelFor's DAG) and
    every task of an uploaded version would still hit the cache. The driver
    (2.15.0 ``driver/container.go: Container``) reads each task's own ``cachingOptions``."""
    host, state = kfp
    committed = next(yaml.safe_load_all(package_path.read_text(encoding="utf-8")))
    cached = _cached_tasks(committed)
    assert cached["comp-for-loop-1/sft"] and cached["root/build-datasets"]  # on by default
    nested = {key.rsplit("/", 1)[1] for key in cached if not key.startswith("root/")}
    assert {"sft", "raft", "export"} <= nested  # in the loop's DAG and raft's condition DAG

    assert _submit(host, package_path, "--no-cache", "--run-name", "inline") == 0
    assert _submit(host, package_path, "--run-name", "cached") == 0
    inline, plain = (run["pipeline_spec"]["pipeline_spec"] for run in state.runs.values())
    assert set(_cached_tasks(inline)) == set(cached)
    assert not any(_cached_tasks(inline).values()), _cached_tasks(inline)
    assert _cached_tasks(plain) == cached  # as compiled (resolve_sources is never cached)

    for run_name, extra in (("v-cached", ()), ("v-fresh", ("--no-cache",))):
        assert (
            _submit(
                host, package_path, "--pipeline-name", "mongars", "--run-name", run_name, *extra
            )
            == 0
        )
    *_, cached_run, fresh_run = state.runs.values()
    version = {
        run["display_name"]: state.versions[
            run["pipeline_version_reference"]["pipeline_version_id"]
        ]
        for run in (cached_run, fresh_run)
    }
    assert version["v-cached"]["display_name"] != version["v-fresh"]["display_name"]
    fresh_spec = version["v-fresh"]["pipeline_spec"]["pipeline_spec"]
    assert not any(_cached_tasks(fresh_spec).values())
    assert _cached_tasks(version["v-cached"]["pipeline_spec"]["pipeline_spec"]) == cached
    # The Kubernetes platform spec (node selector, PVC, secret) survives the rewrite.
    assert (
        version["v-fresh"]["pipeline_spec"]["platform_spec"]
        == (version["v-cached"]["pipeline_spec"]["platform_spec"])
    )


def test_schedule_no_cache_reaches_loop_tasks(
    kfp: tuple[str, KfpState], package_path: Path
) -> None:
    host, state = kfp
    code = main(
        [
            "schedule",
            "--host",
            host,
            "--package",
            str(package_path),
            "--cron",
            "0 0 2 * * *",
            "--no-cache",
        ]
    )
    assert code == 0
    (recurring,) = state.recurring_runs.values()
    assert not any(_cached_tasks(recurring["pipeline_spec"]["pipeline_spec"]).values())


def test_single_user_kfp_runs_pods_in_its_own_namespace(
    kfp: tuple[str, KfpState], package_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2.15.0 ``resource_manager.go: ReplaceNamespace`` + ``CreateRun``: a standalone KFP puts
    every run in its own namespace; a ``--namespace`` there is refused, not silently ignored."""
    host, state = kfp
    assert _submit(host, package_path, "--namespace", "team-ml") == 2
    err = capsys.readouterr().err
    assert "--namespace team-ml: this Kubeflow Pipelines is single-user" in err
    assert len(err.strip().splitlines()) == 1
    assert not state.runs and not state.experiments

    assert _submit(host, package_path, "--run-name", "standalone") == 0
    assert "pods run in namespace kubeflow as service account pipeline-runner" in (
        capsys.readouterr().out
    )
    (run,) = state.runs.values()
    assert run["_pods_namespace"] == "kubeflow"
    assert (
        _submit(
            host, package_path, "--kfp-namespace", "ml-pipelines", "--namespace", "ml-pipelines"
        )
        == 0
    )
    assert "pods run in namespace ml-pipelines" in capsys.readouterr().out


def test_multi_user_kfp_needs_the_profile_namespace(
    kfp: tuple[str, KfpState], package_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, state = kfp
    state.multi_user = True
    assert _submit(host, package_path) == 2
    assert "multi-user (healthz multi_user=true): give your profile namespace" in (
        capsys.readouterr().err
    )
    assert not state.runs
    assert (
        _submit(
            host,
            package_path,
            "--namespace",
            "team-ml",
            "--service-account",
            "mongars-pipeline-runner",
        )
        == 0
    )
    assert "pods run in namespace team-ml as service account mongars-pipeline-runner" in (
        capsys.readouterr().out
    )
    (run,) = state.runs.values()
    assert run["_pods_namespace"] == "team-ml"
    assert run["service_account"] == "mongars-pipeline-runner"


def test_check_cluster_looks_where_the_pods_will_run(
    kfp: tuple[str, KfpState],
    package_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--check-cluster``: the service account, Secret and PVC, in the namespace the server's
    mode sends the pods to; a missing one refuses the submission before anything is created."""
    import base64

    from deploy_servers import kube_server

    host, state = kfp
    with kube_server(tmp_path, namespace="team-ml") as (kubeconfig, kube):
        check = ("--check-cluster", "--kubeconfig", str(kubeconfig))
        assert _submit(host, package_path, *check) == 2
        captured = capsys.readouterr()
        assert "service account pipeline-runner not found in namespace kubeflow" in captured.out
        assert "--check-cluster: namespace kubeflow lacks what the pods need" in captured.err
        assert not state.runs and not state.experiments
        meta = {"namespace": "kubeflow"}
        kube.add(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "pipeline-runner", **meta},
            }
        )
        kube.add(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "hf-token", **meta},
                "data": {"token": base64.b64encode(b"x").decode()},
            }
        )
        kube.add(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "mongars-model-cache", **meta},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "resources": {"requests": {"storage": "1Ti"}},
                },
                "status": {"phase": "Bound", "accessModes": ["ReadWriteMany"]},
            }
        )
        assert _submit(host, package_path, *check) == 0
        assert len(state.runs) == 1


STRING_VALUES = "gpu_node_selector: must map label names to string values"


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ('gpu_node_selector={"nvidia.com/gpu.present": true}', STRING_VALUES),
        ('gpu_node_selector={"pool": 1}', STRING_VALUES),
        (
            'gpu_tolerations=[{"key": "nvidia.com/gpu", "operator": "Exist"}]',
            "gpu_tolerations[0].operator: 'Exist' is not Exists or Equal",
        ),
        (
            "model_cache_pvc=cache.v2",
            "model_cache_pvc: 'cache.v2' cannot be mounted: the KFP driver uses the PVC name as "
            "the pod volume's name",
        ),
        ("model_cache_pvc=" + "c" * 64, "must be a DNS-1123 label"),
    ],
)
def test_placement_values_are_type_checked_at_submit(
    kfp: tuple[str, KfpState],
    package_path: Path,
    capsys: pytest.CaptureFixture[str],
    param: str,
    expected: str,
) -> None:
    """2.15.0 ``driver/k8s.go: extendPodSpecPatch`` unmarshals the node selector into
    ``map[string]string`` and ``makeVolumeMountPatch`` names the pod volume after the PVC: both
    fail at the first GPU task, an hour in; here they fail before any request."""
    host, state = kfp
    assert _submit(host, package_path, "--param", param) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1
    assert state.requests == []
