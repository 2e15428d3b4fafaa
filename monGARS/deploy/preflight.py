"""``mongars preflight``: will a run's tasks find what they need on this cluster?

Checks, with the same placement parameters a run would use: GPU nodes that match the node
selector and offer the accelerator, taints on them that the tolerations do not cover, the Hugging
Face token Secret (and its key), and the model-cache PVC. Each problem comes with the command that
fixes it. Secret values are never read into output: only key names and emptiness are checked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from monGARS.mlops.errors import MongarsError

HF_TOKEN_KEY = "token"
BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
# The CUDA 13 runtime in the training image (torch 2.13 from PyPI) needs this driver or newer.
MIN_DRIVER_MAJOR = 580
DRIVER_LABELS = ("nvidia.com/cuda.driver-version.major", "nvidia.com/cuda.driver.major")

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    level: Level
    check: str
    message: str
    fix: str = ""


@dataclass(frozen=True)
class Placement:
    """The pipeline parameters that decide where GPU tasks run and what they mount."""

    accelerator_type: str = "nvidia.com/gpu"
    gpu_limit: int = 1
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    hf_token_secret: str = ""
    model_cache_pvc: str = ""


def placement_from(
    parameters: dict[str, Any], accelerator: tuple[str, int] | None = ("nvidia.com/gpu", 1)
) -> Placement:
    """Build and check a ``Placement`` from pipeline parameter values (defaults merged in).

    ``accelerator`` is what the compiled pipeline's GPU tasks request (fixed at compile time).
    """
    from monGARS.deploy.pipeline_package import placement_problems

    problems = placement_problems(parameters)
    if problems:
        raise MongarsError("invalid placement parameters: " + "; ".join(problems))
    selector = parameters.get("gpu_node_selector") or {}
    tolerations = parameters.get("gpu_tolerations") or []
    if isinstance(tolerations, dict):
        tolerations = [tolerations]
    accelerator_type, gpu_limit = accelerator or ("nvidia.com/gpu", 1)
    return Placement(
        accelerator_type=accelerator_type,
        gpu_limit=max(gpu_limit, 1),
        node_selector=dict(selector),
        tolerations=[dict(t) for t in tolerations],
        hf_token_secret=str(parameters.get("hf_token_secret") or ""),
        model_cache_pvc=str(parameters.get("model_cache_pvc") or ""),
    )


# --- pure checks on API-shaped dicts -------------------------------------------------------


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """Kubernetes' rule: does ``toleration`` tolerate ``taint``?"""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    if (toleration.get("operator") or "Equal") == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def _taint_text(taint: dict[str, Any]) -> str:
    value = f"={taint['value']}" if taint.get("value") else ""
    return f"{taint.get('key')}{value}:{taint.get('effect')}"


def _allocatable(node: dict[str, Any], resource: str) -> int:
    raw = str(((node.get("status") or {}).get("allocatable") or {}).get(resource, "0"))
    try:
        return int(raw)
    except ValueError:
        return 0


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))


def _selector_text(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def check_gpu_nodes(
    nodes: list[dict[str, Any]], placement: Placement, *, allow_scale_from_zero: bool = False
) -> list[Finding]:
    """Nodes already filtered by the node selector: GPUs offered, taints tolerated, drivers."""
    selector = _selector_text(placement.node_selector) or "(no node selector)"
    resource, limit = placement.accelerator_type, placement.gpu_limit
    if not nodes:
        level: Level = "warn" if allow_scale_from_zero else "fail"
        return [
            Finding(
                level,
                "gpu-nodes",
                f"no node matches {selector}",
                "create a GPU node pool with these labels (GKE adds cloud.google.com/"
                "gke-accelerator), or set --param gpu_node_selector='{...}' to your GPU nodes' "
                "labels; a pool that autoscales from zero has no nodes yet: pass "
                "--allow-scale-from-zero",
            )
        ]
    schedulable = [n for n in nodes if not (n.get("spec") or {}).get("unschedulable")]
    with_gpus = [n for n in schedulable if _allocatable(n, resource) >= limit]
    if not with_gpus:
        names = ", ".join(_name(n) for n in nodes[:5])
        return [
            Finding(
                "fail",
                "gpu-nodes",
                f"{len(nodes)} node(s) match {selector} ({names}) but none is schedulable with "
                f"allocatable {resource} >= {limit}",
                "install the GPU driver and device plugin (GKE: gpu-driver-version=latest on the "
                "node pool; elsewhere the NVIDIA GPU operator), uncordon the nodes, or lower "
                "gpu_limit",
            )
        ]
    findings = [
        Finding(
            "ok",
            "gpu-nodes",
            f"{len(with_gpus)} schedulable node(s) match {selector} with {resource} >= {limit}: "
            + ", ".join(_name(n) for n in with_gpus[:5]),
        )
    ]
    findings.extend(_check_taints(with_gpus, placement))
    findings.extend(_check_drivers(with_gpus))
    return findings


def _check_taints(nodes: list[dict[str, Any]], placement: Placement) -> list[Finding]:
    findings: list[Finding] = []
    blocked: dict[str, list[str]] = {}
    all_taints: list[dict[str, Any]] = []
    for node in nodes:
        taints = (node.get("spec") or {}).get("taints") or []
        all_taints.extend(taints)
        untolerated = [
            _taint_text(t)
            for t in taints
            if t.get("effect") in BLOCKING_EFFECTS
            and not any(tolerates(tol, t) for tol in placement.tolerations)
        ]
        if untolerated:
            blocked[_name(node)] = untolerated
    if len(blocked) == len(nodes):
        sample = sorted({taint for taints in blocked.values() for taint in taints})
        findings.append(
            Finding(
                "fail",
                "gpu-taints",
                f"every GPU node has a taint the tolerations do not cover: {', '.join(sample)}",
                "add a toleration per taint to gpu_tolerations, e.g. "
                + ", ".join(
                    f'{{"key": "{t.split(":")[0].split("=")[0]}", "operator": "Exists", '
                    f'"effect": "{t.split(":")[-1]}"}}'
                    for t in sample[:2]
                ),
            )
        )
    elif blocked:
        findings.append(
            Finding(
                "warn",
                "gpu-taints",
                "some GPU nodes carry untolerated taints and will not be used: "
                + "; ".join(f"{n}: {', '.join(t)}" for n, t in sorted(blocked.items())[:3]),
            )
        )
    else:
        findings.append(Finding("ok", "gpu-taints", "every taint on the GPU nodes is tolerated"))
    for toleration in placement.tolerations:
        if not any(tolerates(toleration, taint) for taint in all_taints):
            findings.append(
                Finding(
                    "warn",
                    "gpu-taints",
                    f"toleration {_toleration_text(toleration)} matches no taint on the GPU nodes "
                    "(harmless: clusters with the NVIDIA GPU operator often leave GPU nodes "
                    "untainted; check the key if you expected one)",
                )
            )
    return findings


def _toleration_text(toleration: dict[str, Any]) -> str:
    key = toleration.get("key") or "*"
    operator = toleration.get("operator") or "Equal"
    value = f"={toleration.get('value')}" if operator == "Equal" else " exists"
    return f"{key}{value}:{toleration.get('effect') or 'any effect'}"


def _check_drivers(nodes: list[dict[str, Any]]) -> list[Finding]:
    old = []
    for node in nodes:
        labels = (node.get("metadata") or {}).get("labels") or {}
        for label in DRIVER_LABELS:
            if str(labels.get(label, "")).isdigit() and int(labels[label]) < MIN_DRIVER_MAJOR:
                old.append(f"{_name(node)} ({labels[label]})")
                break
    if not old:
        return []
    return [
        Finding(
            "warn",
            "gpu-driver",
            f"NVIDIA driver older than {MIN_DRIVER_MAJOR} on {', '.join(old[:5])}: the training "
            "image's CUDA 13 runtime will not start there",
            "upgrade the driver (GPU operator: driver.version; GKE: gpu-driver-version=latest)",
        )
    ]


def check_secret(
    secret: dict[str, Any] | None, placement: Placement, namespace: str
) -> list[Finding]:
    """The HF token Secret exists and has a non-empty ``token`` key (value never shown)."""
    name = placement.hf_token_secret
    create = (
        f"read -rs HF_TOKEN && kubectl -n {namespace} create secret generic {name or 'hf-token'} "
        f'--from-literal={HF_TOKEN_KEY}="$HF_TOKEN"'
    )
    if not name:
        return [Finding("ok", "hf-token", "hf_token_secret is empty: tasks run without a token")]
    if secret is None:
        return [
            Finding(
                "fail",
                "hf-token",
                f"secret {name} not found in namespace {namespace}",
                f"{create}  (or --param hf_token_secret='' for public models only)",
            )
        ]
    data = {**(secret.get("data") or {}), **(secret.get("stringData") or {})}
    if HF_TOKEN_KEY not in data:
        keys = ", ".join(sorted(data)) or "none"
        return [
            Finding(
                "fail",
                "hf-token",
                f"secret {name} has no key {HF_TOKEN_KEY!r} (keys: {keys}); tasks would get "
                "no HF_TOKEN",
                f"kubectl -n {namespace} delete secret {name} && {create}",
            )
        ]
    if not data[HF_TOKEN_KEY]:
        return [
            Finding(
                "fail",
                "hf-token",
                f"secret {name} key {HF_TOKEN_KEY!r} is empty",
                f"kubectl -n {namespace} delete secret {name} && {create}",
            )
        ]
    return [Finding("ok", "hf-token", f"secret {name} has a non-empty {HF_TOKEN_KEY!r} key")]


# CSI drivers / in-tree provisioners whose volumes are block devices, attachable to one node at a
# time: ReadWriteOnce only (GKE PD, EBS, Azure Disk, Cinder, vSphere, local-path, TopoLVM).
BLOCK_PROVISIONERS = frozenset(
    {
        "pd.csi.storage.gke.io",
        "kubernetes.io/gce-pd",
        "ebs.csi.aws.com",
        "kubernetes.io/aws-ebs",
        "disk.csi.azure.com",
        "kubernetes.io/azure-disk",
        "cinder.csi.openstack.org",
        "csi.vsphere.vmware.com",
        "rancher.io/local-path",
        "topolvm.io",
    }
)
RWX = "ReadWriteMany"


def check_service_account(
    account: dict[str, Any] | None, name: str, namespace: str
) -> list[Finding]:
    """The service account the pods run as exists where they run (else Argo cannot start them)."""
    if account is None:
        return [
            Finding(
                "fail",
                "service-acct",
                f"service account {name} not found in namespace {namespace}: the run's pods "
                "could not be created",
                f"kubectl apply -k manifests/overlays/<yours> with namespace {namespace} (it "
                "creates mongars-pipeline-runner), or pass --service-account NAME of an existing "
                "one",
            )
        ]
    return [Finding("ok", "service-acct", f"service account {name} exists in {namespace}")]


def check_pvc(
    pvc: dict[str, Any] | None,
    storage_class: dict[str, Any] | None,
    placement: Placement,
    namespace: str,
    *,
    parallelism: int = 0,
) -> list[Finding]:
    """The model-cache PVC exists, binds, and can be mounted by every pod that needs it at once.

    ``parallelism`` is the compiled ParallelFor's limit (0 = every module at once): above 1, sft,
    llm2vec, raft and merge pods of different modules mount the volume at the same time from
    different nodes, which only ReadWriteMany allows (a ReadWriteOnce volume attaches to one node:
    the other pods stay ContainerCreating with a Multi-Attach error). Binding follows the
    StorageClass's ``volumeBindingMode``: ``WaitForFirstConsumer`` leaves a healthy claim Pending
    until a pod uses it; ``Immediate`` (the default) should have bound it already.
    """
    name = placement.model_cache_pvc
    if not name:
        return [Finding("ok", "model-cache", "model_cache_pvc is empty: no shared model cache")]
    if pvc is None:
        return [
            Finding(
                "fail",
                "model-cache",
                f"PVC {name} not found in namespace {namespace}",
                "kubectl apply -k manifests/overlays/<your overlay> (it creates "
                "mongars-model-cache), or set --param model_cache_pvc to an existing PVC",
            )
        ]
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    phase = str(status.get("phase", "Pending"))
    class_name = spec.get("storageClassName") or "(default class)"
    findings = _access_mode_findings(pvc, storage_class, name, parallelism)
    if phase == "Bound":
        modes = ", ".join(status.get("accessModes") or spec.get("accessModes") or [])
        return [Finding("ok", "model-cache", f"PVC {name} is Bound ({modes})"), *findings]
    if (
        phase == "Pending"
        and (storage_class or {}).get("volumeBindingMode") == "WaitForFirstConsumer"
    ):
        return [
            Finding(
                "warn",
                "model-cache",
                f"PVC {name} is Pending: storage class {class_name} binds it when the first pod "
                "uses it",
            ),
            *findings,
        ]
    return [
        Finding(
            "fail",
            "model-cache",
            f"PVC {name} is {phase} (storage class {class_name}"
            + (
                ", volumeBindingMode Immediate: it should be Bound by now"
                if phase == "Pending"
                else ""
            )
            + ")",
            f"kubectl -n {namespace} describe pvc {name}; the class must provision "
            "ReadWriteMany volumes (GKE: standard-rwx with the Filestore CSI driver enabled)",
        ),
        *findings,
    ]


def _access_mode_findings(
    pvc: dict[str, Any],
    storage_class: dict[str, Any] | None,
    name: str,
    parallelism: int,
) -> list[Finding]:
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    # A bound claim's status carries the modes the volume really has.
    modes = set(status.get("accessModes") or spec.get("accessModes") or [])
    several_nodes = parallelism != 1
    at_once = "every module" if parallelism == 0 else f"{parallelism} modules"
    findings: list[Finding] = []
    if several_nodes and RWX not in modes:
        findings.append(
            Finding(
                "fail",
                "cache-access",
                f"PVC {name} is {', '.join(sorted(modes)) or 'without access modes'}; the "
                f"pipeline trains {at_once} at once on several nodes, which needs {RWX}",
                "recreate the PVC with accessModes [ReadWriteMany] on a class that provides it "
                "(GKE: standard-rwx; EKS: efs-sc; AKS: azurefile-csi; NFS CSI), or compile with "
                "--parallelism 1",
            )
        )
    provisioner = str((storage_class or {}).get("provisioner") or "")
    if RWX in modes and provisioner in BLOCK_PROVISIONERS:
        findings.append(
            Finding(
                "fail",
                "cache-access",
                f"PVC {name} asks for {RWX} but storage class "
                f"{(storage_class or {}).get('metadata', {}).get('name', '?')} uses {provisioner}, "
                "whose volumes attach to one node (ReadWriteOnce): the claim never binds",
                "use a file-storage class (Filestore, EFS, Azure Files, NFS, CephFS)",
            )
        )
    elif several_nodes and RWX in modes:
        findings.append(Finding("ok", "cache-access", f"PVC {name} is {RWX}"))
    return findings


# --- talking to the cluster ----------------------------------------------------------------


def kube_api_client(kubeconfig: str | None, context: str | None) -> Any:
    """An ApiClient from a kubeconfig (or the pod's service account when running in a cluster)."""
    from kubernetes import config

    try:
        if kubeconfig is None and context is None:
            with contextlib.suppress(config.ConfigException):
                config.load_incluster_config()
                from kubernetes import client

                return client.ApiClient()
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except (config.ConfigException, OSError, ValueError) as error:
        reason = str(error).splitlines()[0][:200]
        raise MongarsError(
            f"--kubeconfig/--context: cannot load cluster credentials ({reason}); point "
            "KUBECONFIG or --kubeconfig at a kubeconfig with a current context"
        ) from None


def default_namespace(kubeconfig: str | None, context: str | None) -> str | None:
    """The namespace of the kubeconfig context, if it sets one."""
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError, ValueError):
        return None
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    return ((chosen or {}).get("context") or {}).get("namespace")


@contextlib.contextmanager
def _kube_errors(action: str, host: str) -> Iterator[None]:
    import urllib3
    from kubernetes.client.exceptions import ApiException

    try:
        yield
    except ApiException as error:
        if error.status in (401, 403):
            raise MongarsError(
                f"{action}: the Kubernetes API answered {error.status} {error.reason}; your "
                "credentials lack this permission (check with kubectl auth can-i)"
            ) from None
        raise MongarsError(
            f"{action}: the Kubernetes API answered {error.status} {error.reason}"
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise MongarsError(
            f"{action}: cannot reach the Kubernetes API at {host} "
            f"({str(getattr(error, 'reason', '') or error).splitlines()[0][:200]})"
        ) from None


def _read_or_none(function: Any, *args: Any) -> Any:
    from kubernetes.client.exceptions import ApiException

    try:
        return function(*args)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def run_preflight(
    api_client: Any,
    namespace: str,
    placement: Placement,
    *,
    allow_scale_from_zero: bool = False,
    service_account: str | None = None,
    parallelism: int = 0,
) -> list[Finding]:
    """Fetch nodes and the namespace's objects, and run every check."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    plain = api_client.sanitize_for_serialization
    host = str(api_client.configuration.host)
    findings: list[Finding] = []
    with _kube_errors("list nodes", host):
        selector = _selector_text(placement.node_selector)
        nodes = core.list_node(label_selector=selector) if selector else core.list_node()
    findings += check_gpu_nodes(
        [plain(n) for n in nodes.items], placement, allow_scale_from_zero=allow_scale_from_zero
    )
    findings += check_namespace_objects(
        api_client, namespace, placement, service_account=service_account, parallelism=parallelism
    )
    return findings


def check_namespace_objects(
    api_client: Any,
    namespace: str,
    placement: Placement,
    *,
    service_account: str | None = None,
    parallelism: int = 0,
) -> list[Finding]:
    """The service account, Secret and PVC the pods use, in the namespace they run in."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    plain = api_client.sanitize_for_serialization
    host = str(api_client.configuration.host)
    findings: list[Finding] = []
    if service_account:
        with _kube_errors(f"read service account {service_account}", host):
            account = _read_or_none(
                core.read_namespaced_service_account, service_account, namespace
            )
        findings += check_service_account(
            plain(account) if account is not None else None, service_account, namespace
        )
    if placement.hf_token_secret:
        with _kube_errors(f"read secret {placement.hf_token_secret}", host):
            secret = _read_or_none(
                core.read_namespaced_secret, placement.hf_token_secret, namespace
            )
        findings += check_secret(
            plain(secret) if secret is not None else None, placement, namespace
        )
    else:
        findings += check_secret(None, placement, namespace)
    storage_class = None
    pvc = None
    if placement.model_cache_pvc:
        with _kube_errors(f"read PVC {placement.model_cache_pvc}", host):
            pvc_obj = _read_or_none(
                core.read_namespaced_persistent_volume_claim, placement.model_cache_pvc, namespace
            )
        pvc = plain(pvc_obj) if pvc_obj is not None else None
        class_name = ((pvc or {}).get("spec") or {}).get("storageClassName")
        if pvc and class_name:
            from kubernetes.client.exceptions import ApiException

            # Optional detail: many users may not read cluster-scoped StorageClasses.
            with contextlib.suppress(ApiException):
                found = client.StorageV1Api(api_client).read_storage_class(class_name)
                storage_class = plain(found)
    findings += check_pvc(pvc, storage_class, placement, namespace, parallelism=parallelism)
    return findings


def check_kfp_version(reported: str | None, minimum: tuple[int, int]) -> Finding:
    """Is the KFP backend recent enough for the compiled pipeline?"""
    from monGARS.pipelines.backend_rules import parse_version

    wanted = f"{minimum[0]}.{minimum[1]}"
    parsed = parse_version(reported) if reported else None
    if parsed is None:
        return Finding(
            "warn",
            "kfp-version",
            f"the KFP API did not report its release; this pipeline needs {wanted} or newer",
            "check the ml-pipeline image tag: kubectl -n kubeflow get deploy ml-pipeline "
            "-o jsonpath='{..image}'",
        )
    if parsed[:2] < minimum:
        return Finding(
            "fail",
            "kfp-version",
            f"Kubeflow Pipelines {reported} is older than {wanted}, the oldest that runs this "
            "pipeline",
            f"upgrade Kubeflow Pipelines to {wanted} or newer",
        )
    return Finding("ok", "kfp-version", f"Kubeflow Pipelines {reported} (needs {wanted}+)")


def format_findings(findings: list[Finding], *, strict: bool = False) -> tuple[str, int]:
    """Printable report and exit code: 1 when something fails (or warns, with ``strict``)."""
    lines = []
    for finding in findings:
        lines.append(f"  {finding.level.upper():<4}  {finding.check:<12} {finding.message}")
        if finding.fix and finding.level != "ok":
            lines.append(f"        {'':<12} fix: {finding.fix}")
    failures = sum(f.level == "fail" for f in findings)
    warnings = sum(f.level == "warn" for f in findings)
    lines.append(f"preflight: {failures} problem(s), {warnings} warning(s)")
    code = 1 if failures or (strict and warnings) else 0
    return "\n".join(lines), code
