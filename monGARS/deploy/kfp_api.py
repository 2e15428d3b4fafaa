"""A kfp.Client for the target Kubeflow Pipelines, and KFP API failures as one-line errors.

The bearer token comes from ``KFP_TOKEN`` (never a flag, so it stays out of shell history and
process lists) and is never printed: errors are built from the HTTP status and the server's
message only.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from monGARS.mlops.errors import MongarsError

TOKEN_ENV = "KFP_TOKEN"
HOST_ENV = "KF_PIPELINES_ENDPOINT"
DEFAULT_KFP_NAMESPACE = "kubeflow"
"""Where a standalone KFP runs pods: the API server's ``POD_NAMESPACE`` (kubeflow/pipelines 2.15.0
``backend/src/apiserver/common/const.go: DefaultPodNamespace``)."""
# The runner accounts KFP's own manifests configure (2.15.0 ``common/const.go:
# DefaultPipelineRunnerServiceAccount``; multi-user ``manifests/kustomize/base/installs/multi-user/
# api-service/params.env: DEFAULTPIPELINERUNNERSERVICEACCOUNT=default-editor``).
SINGLE_USER_RUNNER = "pipeline-runner"
MULTI_USER_RUNNER = "default-editor"

T = TypeVar("T")


@dataclass(frozen=True)
class KfpTarget:
    """Where runs go: the KFP API endpoint and (multi-user Kubeflow) the profile namespace.

    ``kfp_namespace`` is where a single-user KFP runs every pod whatever the run asks.
    """

    host: str | None
    namespace: str | None
    kfp_namespace: str = DEFAULT_KFP_NAMESPACE

    def describe(self) -> str:
        return self.host or os.environ.get(HOST_ENV) or "the in-cluster / kubeconfig KFP endpoint"


def _probe(host: str, token: str | None, target: KfpTarget) -> None:
    """One healthz call: kfp.Client's own check retries a refused token for 25 s."""
    import kfp_server_api

    config = kfp_server_api.Configuration(host=host.rstrip("/"))
    if token:
        config.api_key["authorization"] = token
        config.api_key_prefix["authorization"] = "Bearer"
    api = kfp_server_api.HealthzServiceApi(kfp_server_api.ApiClient(config))
    with calling(target, "connect"):
        api.healthz_service_get_healthz(_request_timeout=30)


@dataclass(frozen=True)
class PodsNamespace:
    """Where a run's pods will really run, as which account, and why."""

    namespace: str
    service_account: str
    multi_user: bool

    def describe(self) -> str:
        mode = "multi-user" if self.multi_user else "single-user"
        return (
            f"pods run in namespace {self.namespace} as service account {self.service_account} "
            f"({mode} Kubeflow Pipelines)"
        )


def pods_namespace(
    multi_user: bool, target: KfpTarget, service_account: str | None
) -> PodsNamespace:
    """The namespace the backend will run the pods in; refuse a ``--namespace`` it would ignore.

    kubeflow/pipelines 2.15.0: ``apiserver/server/experiment_server.go: createExperiment`` and
    ``run_server.go`` pass the namespace through ``resource/resource_manager.go:
    ReplaceNamespace``, which returns "" unless ``IsMultiUserMode()``; ``CreateRun`` then puts the
    Argo workflow in ``common.GetPodNamespace()`` (the API server's own namespace). So on a
    single-user install the Secret, PVC and service account must live in *that* namespace, and a
    ``--namespace`` elsewhere would only send the run where none of them is. Multi-user refuses a
    run without a namespace (``run_server.go``: "A run cannot have an empty namespace in
    multi-user mode").
    """
    if multi_user:
        if not target.namespace:
            raise MongarsError(
                "--namespace: this Kubeflow Pipelines is multi-user (healthz multi_user=true): "
                "give your profile namespace, where runs and their pods go"
            )
        return PodsNamespace(target.namespace, service_account or MULTI_USER_RUNNER, True)
    if target.namespace and target.namespace != target.kfp_namespace:
        raise MongarsError(
            f"--namespace {target.namespace}: this Kubeflow Pipelines is single-user (healthz "
            f"multi_user=false) and runs every pod in its own namespace "
            f"({target.kfp_namespace}), whatever the run asks; drop --namespace and keep the "
            f"Secret, PVC and service account in {target.kfp_namespace} (--kfp-namespace if KFP "
            "is installed elsewhere)"
        )
    return PodsNamespace(target.kfp_namespace, service_account or SINGLE_USER_RUNNER, False)


def read_multi_user(client: Any, target: KfpTarget) -> bool:
    """The server's ``multi_user`` (v2beta1 healthz; 2.15.0 ``backend/src/apiserver/main.go``)."""
    response = call(target, "read healthz", client._healthz_api.healthz_service_get_healthz)
    return bool(getattr(response, "multi_user", False))


@dataclass(frozen=True)
class ServerInfo:
    """What the v1beta1 healthz says: the release tag and the mode (None where it says none)."""

    release: str | None
    multi_user: bool | None


def server_info(host: str, token: str | None) -> ServerInfo:
    """The release and mode the API server reports (``/apis/v1beta1/healthz``).

    kubeflow/pipelines 2.15.0 ``backend/src/apiserver/main.go`` serves ``commit_sha``,
    ``tag_name`` and ``multi_user`` there (the v2beta1 one adds ``pipeline_store``; the SDK's
    model of it drops ``tag_name``).
    """
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{host.rstrip('/')}/apis/v1beta1/healthz")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.loads(response.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return ServerInfo(None, None)
    if not isinstance(payload, dict):
        return ServerInfo(None, None)
    tag = payload.get("tag_name")
    mode = payload.get("multi_user")
    return ServerInfo(str(tag) if tag else None, mode if isinstance(mode, bool) else None)


def server_version(host: str, token: str | None) -> str | None:
    """The KFP release the API server reports (v1beta1 healthz ``tag_name``), None if it says none.

    The v2beta1 healthz answers only ``multi_user``; the v1beta1 one, still served by KFP 2.x,
    carries the release tag.
    """
    return server_info(host, token).release


def check_server_version(host: str, token: str | None, minimum: tuple[int, int]) -> str:
    """Refuse, in one line, a KFP backend older than ``minimum``; return what it reported."""
    from monGARS.pipelines.backend_rules import parse_version

    reported = server_version(host, token)
    parsed = parse_version(reported) if reported else None
    wanted = f"{minimum[0]}.{minimum[1]}"
    if parsed is not None and parsed[:2] < minimum:
        raise MongarsError(
            f"Kubeflow Pipelines at {host} is {reported}; this pipeline needs {wanted} or newer "
            "(docs/cluster.md, 'Backend version'): upgrade KFP"
        )
    return reported or "unknown"


def make_client(target: KfpTarget, minimum_version: tuple[int, int] | None = None) -> Any:
    """A ``kfp.Client`` with ``KFP_TOKEN`` as bearer token when it is set.

    With ``minimum_version``, a backend that reports an older release is refused before anything
    is uploaded.
    """
    import kfp

    token = os.environ.get(TOKEN_ENV) or None
    host = target.host or os.environ.get(HOST_ENV)
    if host:
        _probe(host, token, target)
        if minimum_version is not None:
            check_server_version(host, token, minimum_version)
    kwargs: dict[str, Any] = {"host": target.host, "existing_token": token}
    if target.namespace:
        kwargs["namespace"] = target.namespace
    with warnings.catch_warnings(), calling(target, "connect"):
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2+"
        # kfp prints "Failed to load kube config." when it finds none; keep stdout clean.
        with contextlib.redirect_stdout(io.StringIO()):
            return kfp.Client(**kwargs)


def _server_message(body: Any) -> str:
    """The message field of a KFP (grpc-gateway) error body, else its first line."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return ""
    try:
        payload = json.loads(body)
    except (TypeError, ValueError):
        return str(body).strip().splitlines()[0][:300]
    if isinstance(payload, dict):
        return str(payload.get("message") or payload.get("error") or "")[:300]
    return ""


@contextlib.contextmanager
def calling(target: KfpTarget, action: str) -> Iterator[None]:
    """Turn KFP API and connection failures during ``action`` into one-line ``MongarsError``s."""
    import kfp_server_api
    import urllib3

    try:
        yield
    except kfp_server_api.ApiException as error:
        status = getattr(error, "status", None)
        message = _server_message(getattr(error, "body", "")) or str(getattr(error, "reason", ""))
        hint = ""
        if status in (401, 403):
            hint = (
                f"; set {TOKEN_ENV} to a valid token for this KFP (and --namespace for multi-user)"
            )
        elif status == 404:
            hint = "; check --host (it must point at the KFP API, e.g. http://localhost:8888)"
        raise MongarsError(f"{action}: KFP API answered {status} {message}{hint}") from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        reason = str(getattr(error, "reason", "") or error).splitlines()[0][:200]
        raise MongarsError(
            f"{action}: cannot reach Kubeflow Pipelines at {target.describe()} ({reason}); check "
            "--host, or port-forward: kubectl -n kubeflow port-forward svc/ml-pipeline 8888:8888"
        ) from None


def call(
    target: KfpTarget, action: str, function: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """One client call, KFP errors as ``MongarsError``; kfp's own link prints hidden."""
    with calling(target, action), contextlib.redirect_stdout(io.StringIO()):
        return function(*args, **kwargs)
