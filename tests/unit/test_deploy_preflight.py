"""``mongars preflight`` through the kubernetes client against a local Kubernetes API server."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_servers import KubeState, kube_server

from monGARS.deploy.cli import main
from monGARS.deploy.preflight import Placement, check_gpu_nodes, tolerates

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "team-ml"
L4 = {"cloud.google.com/gke-accelerator": "nvidia-l4"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
SECRET_VALUE = "hf_" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1"


def node(
    name: str,
    labels: dict[str, str],
    gpus: int = 1,
    taints: list[dict] | None = None,
    unschedulable: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"taints": taints or []}
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
        "spec": spec,
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": str(gpus)}},
    }


def secret(data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hf-token", "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def pvc(phase: str, storage_class: str = "standard-rwx") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "mongars-model-cache", "namespace": NAMESPACE},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": storage_class,
            "resources": {"requests": {"storage": "1Ti"}},
        },
        "status": {"phase": phase},
    }


def storage_class(name: str, binding: str) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "filestore.csi.storage.gke.io",
        "volumeBindingMode": binding,
    }


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Path, KubeState]]:
    with kube_server(tmp_path, namespace=NAMESPACE) as (kubeconfig, state):
        yield kubeconfig, state


def healthy(state: KubeState) -> None:
    """A GKE-like cluster: tainted L4 pool, a CPU node, the Secret and a Bound PVC."""
    state.add(node("gpu-a", L4, taints=[GPU_TAINT]))
    state.add(node("gpu-b", L4, taints=[GPU_TAINT]))
    state.add(node("cpu-a", {}, gpus=0))
    state.add(secret({"token": SECRET_VALUE}))
    state.add(pvc("Bound"))
    state.add(service_account("default-editor"))


def service_account(name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
    }


def preflight(kubeconfig: Path, *extra: str) -> int:
    return main(
        [
            "preflight",
            "--kubeconfig",
            str(kubeconfig),
            "--package",
            str(REPO / "pipelines" / "mongars.yaml"),
            "--param",
            f"gpu_node_selector={json.dumps(L4)}",
            "--param",
            "hf_token_secret=hf-token",
            "--param",
            "model_cache_pvc=mongars-model-cache",
            *extra,
        ]
    )


@pytest.fixture(autouse=True)
def _needs_compiled_pipeline() -> None:
    # The YAML is committed: its absence is a failure, never a silent skip.
    assert (REPO / "pipelines" / "mongars.yaml").is_file(), "run `make compile` and commit it"


def test_healthy_cluster_passes_and_never_prints_the_secret(
    cluster: tuple[Path, KubeState], capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig, state = cluster
    healthy(state)
    assert preflight(kubeconfig) == 0
    out = capsys.readouterr().out
    assert "0 problem(s)" in out
    assert "2 schedulable node(s) match cloud.google.com/gke-accelerator=nvidia-l4" in out
    assert "every taint on the GPU nodes is tolerated" in out
    assert SECRET_VALUE not in out and base64.b64encode(SECRET_VALUE.encode()).decode() not in out
    assert any("labelSelector=cloud.google.com" in r for r in state.requests)
    assert set(state.authorization) == {"Bearer kube-test-token"}


def test_missing_things_are_each_reported_with_a_fix(
    cluster: tuple[Path, KubeState], capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig, state = cluster
    state.add(node("cpu-a", {}, gpus=0))
    assert preflight(kubeconfig) == 1
    out = capsys.readouterr().out
    assert "no node matches cloud.google.com/gke-accelerator=nvidia-l4" in out
    assert "secret hf-token not found in namespace team-ml" in out
    assert "kubectl -n team-ml create secret generic hf-token" in out
    assert "PVC mongars-model-cache not found" in out and "kubectl apply -k manifests/" in out
    assert "3 problem(s)" in out


def test_scale_from_zero_pools_are_a_warning(
    cluster: tuple[Path, KubeState], capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig, state = cluster
    state.add(secret({"token": SECRET_VALUE}))
    state.add(pvc("Bound"))
    assert preflight(kubeconfig, "--allow-scale-from-zero") == 0
    assert preflight(kubeconfig, "--allow-scale-from-zero", "--strict") == 1
    assert "WARN  gpu-nodes" in capsys.readouterr().out


def test_untolerated_taint_fails_with_the_toleration_to_add(
    cluster: tuple[Path, KubeState], capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig, state = cluster
    healthy(state)
    state.nodes[0]["spec"]["taints"].append(
        {"key": "dedicated", "value": "ml", "effect": "NoExecute"}
    )
    state.nodes[1]["spec"]["taints"].append(
        {"key": "dedicated", "value": "ml", "effect": "NoExecute"}
    )
    assert preflight(kubeconfig) == 1
    out = capsys.readouterr().out
    assert "dedicated=ml:NoExecute" in out
    assert '{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}' in out


def test_gpu_operator_cluster_without_taints_only_warns_about_the_unused_toleration(
    cluster: tuple[Path, KubeState], capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig, state = cluster
    state.add(
        node(
            "dgx-1",
            {"nvidia.com/gpu.present": "true", "nvidia.com/cuda.driver-version.major": "550"},
            gpus=8,
        )
    )
    state.add(secret({"token": SECRET_VALUE}))
    state.add(pvc("Bound"))
    code = preflight(kubeconfig, "--param", 'gpu_node_selector={"nvidia.com/gpu.present": "true"}')
    out = capsys.readouterr().out
    assert code == 0
    assert "matches no taint" in out
    assert "driver older than 580" in out and "dgx-1 (550)" in out


def test_nodes_without_allocatable_gpus_or_cordoned_fail(
    cluster: tuple[Path, KubeState], capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig, state = cluster
    healthy(state)
    state.nodes[0]["status"]["allocatable"]["nvidia.com/gpu"] = "0"
    state.nodes[1]["spec"]["unschedulable"] = True
    assert preflight(kubeconfig) == 1
    assert "none is schedulable with allocatable nvidia.com/gpu >= 1" in capsys.readouterr().out


def test_secret_without_token_key_or_empty_fails(
    cluster: tuple[Path, KubeState], capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig, state = cluster
    healthy(state)
    state.add(secret({"HF_TOKEN": SECRET_VALUE}))
    assert preflight(kubeconfig) == 1
    assert "has no key 'token' (keys: HF_TOKEN)" in capsys.readouterr().out
    state.add(secret({"token": ""}))
    assert preflight(kubeconfig) == 1
    assert "key 'token' is empty" in capsys.readouterr().out


def test_pending_pvc_fails_unless_it_waits_for_its_first_consumer(
    cluster: tuple[Path, KubeState], capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig, state = cluster
    healthy(state)
    state.add(pvc("Pending"))
    state.add(storage_class("standard-rwx", "Immediate"))
    assert preflight(kubeconfig) == 1
    assert "PVC mongars-model-cache is Pending" in capsys.readouterr().out
    state.add(storage_class("standard-rwx", "WaitForFirstConsumer"))
    assert preflight(kubeconfig) == 0
    assert "binds it when the first pod uses it" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["hf_token_secret", "model_cache_pvc"])
def test_empty_secret_or_pvc_names_are_refused(
    cluster: tuple[Path, KubeState], capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """Kubernetes refuses a pod whose Secret or PVC name is empty: say so before any call."""
    kubeconfig, state = cluster
    assert preflight(kubeconfig, "--param", f"{name}=") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: invalid pipeline parameters:") and f"{name}: must name" in err
    assert len(err.splitlines()) == 1
    assert not state.requests


@pytest.mark.parametrize(
    ("reported", "code", "expected"),
    [
        ("2.15.0", 0, "OK    kfp-version  Kubeflow Pipelines 2.15.0 (needs 2.15+)"),
        ("2.14.1", 1, "FAIL  kfp-version  Kubeflow Pipelines 2.14.1 is older than 2.15"),
        (None, 0, "WARN  kfp-version  the KFP API did not report its release"),
    ],
)
def test_kfp_release_is_checked_against_the_pipeline(
    cluster: tuple[Path, KubeState],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    reported: str | None,
    code: int,
    expected: str,
) -> None:
    from deploy_servers import kfp_server

    kubeconfig, state = cluster
    healthy(state)
    monkeypatch.delenv("KFP_TOKEN", raising=False)
    with kfp_server() as (host, kfp_state):
        kfp_state.server_version = reported
        kfp_state.multi_user = True  # team-ml is a profile namespace
        assert preflight(kubeconfig, "--host", host) == code
    assert expected in capsys.readouterr().out


def test_forbidden_and_unreachable_are_one_line_errors(
    cluster: tuple[Path, KubeState], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kubeconfig, state = cluster
    healthy(state)
    state.forbidden.add("secrets")
    assert preflight(kubeconfig) == 2
    err = capsys.readouterr().err
    assert "403" in err and "auth can-i" in err and len(err.strip().splitlines()) == 1
    missing = tmp_path / "nope" / "kubeconfig"
    assert preflight(missing) == 2
    assert "cannot load cluster credentials" in capsys.readouterr().err
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = tmp_path / "closed-kubeconfig"
    closed.write_text(
        kubeconfig.read_text().replace(state_host(kubeconfig), f"http://127.0.0.1:{port}")
    )
    assert preflight(closed) == 2
    assert "cannot reach the Kubernetes API" in capsys.readouterr().err


def state_host(kubeconfig: Path) -> str:
    import yaml

    return yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]


def test_namespace_comes_from_the_context_or_the_flag(
    cluster: tuple[Path, KubeState], capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig, state = cluster
    healthy(state)
    assert preflight(kubeconfig) == 0
    assert "namespace team-ml" in capsys.readouterr().out
    assert preflight(kubeconfig, "--namespace", "other") == 1
    assert "not found in namespace other" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}, GPU_TAINT, True),
        ({"key": "nvidia.com/gpu", "operator": "Exists"}, GPU_TAINT, True),
        ({"operator": "Exists"}, GPU_TAINT, True),
        ({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}, GPU_TAINT, True),
        ({"key": "nvidia.com/gpu", "value": "absent", "effect": "NoSchedule"}, GPU_TAINT, False),
        ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}, GPU_TAINT, False),
        ({"key": "other", "operator": "Exists"}, GPU_TAINT, False),
    ],
)
def test_toleration_semantics(toleration: dict, taint: dict, expected: bool) -> None:
    assert tolerates(toleration, taint) is expected


def test_prefer_no_schedule_taints_do_not_block() -> None:
    soft = node(
        "gpu-a", L4, taints=[{"key": "spot", "value": "true", "effect": "PreferNoSchedule"}]
    )
    findings = check_gpu_nodes([soft], Placement(node_selector=L4, tolerations=[]))
    assert [f.level for f in findings] == ["ok", "ok"]


# --- the namespace pods really run in (issue 22, point 3) -----------------------------------


def test_single_user_kfp_is_checked_in_its_own_namespace(
    cluster: tuple[Path, KubeState],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kubeflow/pipelines 2.15.0 ``resource_manager.go: ReplaceNamespace`` drops the namespace
    unless multi-user and ``CreateRun`` runs the workflow in ``GetPodNamespace()``: a standalone
    KFP's pods never see team-ml, so preflight checks ``kubeflow`` (and says team-ml is ignored)."""
    from deploy_servers import kfp_server

    kubeconfig, state = cluster
    healthy(state)  # everything in team-ml: useless to a single-user KFP
    monkeypatch.delenv("KFP_TOKEN", raising=False)
    with kfp_server() as (host, kfp_state):
        assert kfp_state.multi_user is False
        assert preflight(kubeconfig, "--host", host, "--namespace", NAMESPACE) == 1
        out = capsys.readouterr().out
        assert (
            "FAIL  kfp-mode     --namespace team-ml: this Kubeflow Pipelines is single-user" in out
        )
        assert "preflight for namespace kubeflow" in out
        assert "PVC mongars-model-cache not found in namespace kubeflow" in out
        assert "service account pipeline-runner not found in namespace kubeflow" in out

        # Set up where the pods really run: passes, and says where and as whom.
        claim = pvc("Bound")
        claim["metadata"]["namespace"] = "kubeflow"
        state.add(claim)
        token = secret({"token": SECRET_VALUE})
        token["metadata"]["namespace"] = "kubeflow"
        state.add(token)
        state.add(service_account("pipeline-runner", "kubeflow"))
        assert preflight(kubeconfig, "--host", host) == 0
        out = capsys.readouterr().out
        assert (
            "OK    kfp-mode     pods run in namespace kubeflow as service account pipeline-runner "
            "(single-user Kubeflow Pipelines)" in out
        )

        kfp_state.multi_user = True  # the same cluster seen as multi-user: team-ml it is
        assert preflight(kubeconfig, "--host", host) == 0
        assert "namespace team-ml as service account default-editor" in capsys.readouterr().out
        assert preflight(kubeconfig, "--host", host, "--service-account", "mongars-runner") == 1
        assert "service account mongars-runner not found in namespace team-ml" in (
            capsys.readouterr().out
        )


# --- the volume (issue 22, point 7) --------------------------------------------------------


def _claim(modes: list[str], phase: str, class_name: str = "standard-rwx") -> dict[str, Any]:
    claim = pvc(phase, class_name)
    claim["spec"]["accessModes"] = modes
    if phase == "Bound":
        claim["status"]["accessModes"] = modes
    return claim


FILESTORE, GKE_PD = "filestore.csi.storage.gke.io", "pd.csi.storage.gke.io"
RWX, RWO, LATE = ["ReadWriteMany"], ["ReadWriteOnce"], "WaitForFirstConsumer"
CLAIM = "PVC mongars-model-cache"


@pytest.mark.parametrize(
    ("modes", "phase", "provisioner", "binding", "code", "expected"),
    [
        (RWX, "Bound", FILESTORE, "Immediate", 0, f"OK    cache-access {CLAIM} is ReadWriteMany"),
        (
            RWO,
            "Bound",
            GKE_PD,
            "Immediate",
            1,
            f"FAIL  cache-access {CLAIM} is ReadWriteOnce; the pipeline trains 4 modules at once "
            "on several nodes, which needs ReadWriteMany",
        ),
        (RWX, "Pending", GKE_PD, LATE, 1, f"uses {GKE_PD}, whose volumes attach to one node"),
        (
            RWX,
            "Pending",
            FILESTORE,
            LATE,
            0,
            f"WARN  model-cache  {CLAIM} is Pending: storage class standard-rwx binds it when",
        ),
        (RWX, "Pending", FILESTORE, "Immediate", 1, "Immediate: it should be Bound by now"),
        (RWX, "Lost", FILESTORE, "Immediate", 1, f"FAIL  model-cache  {CLAIM} is Lost"),
    ],
)
def test_the_cache_volume_must_be_shareable_across_nodes_and_bind(
    cluster: tuple[Path, KubeState],
    capsys: pytest.CaptureFixture[str],
    modes: list[str],
    phase: str,
    provisioner: str,
    binding: str,
    code: int,
    expected: str,
) -> None:
    """The committed YAML runs 4 modules at once (``parallelismLimit: 4``): their GPU and merge
    pods mount the volume from several nodes at the same time, which needs ReadWriteMany."""
    kubeconfig, state = cluster
    state.add(node("gpu-a", L4, taints=[GPU_TAINT]))
    state.add(secret({"token": SECRET_VALUE}))
    state.add(_claim(modes, phase))
    klass = storage_class("standard-rwx", binding)
    klass["provisioner"] = provisioner
    state.add(klass)
    assert preflight(kubeconfig) == code
    assert expected in capsys.readouterr().out


def test_one_module_at_a_time_may_use_a_read_write_once_volume() -> None:
    from monGARS.deploy.preflight import check_pvc

    placement = Placement(model_cache_pvc="mongars-model-cache")
    claim = _claim(["ReadWriteOnce"], "Bound")
    assert [f.level for f in check_pvc(claim, None, placement, NAMESPACE, parallelism=1)] == ["ok"]
    levels = [f.level for f in check_pvc(claim, None, placement, NAMESPACE, parallelism=0)]
    assert levels == ["ok", "fail"]
