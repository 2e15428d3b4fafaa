"""``mongars submit``: start a run of the compiled pipeline on Kubeflow Pipelines, optionally wait.

The run goes into an experiment (created when missing). By default the run carries the pipeline
spec inline, as ``kfp run create`` does; with a pipeline name the YAML is uploaded as a pipeline
version first (idempotent: the same YAML reuses the same version), so the UI lists it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from monGARS.deploy.kfp_api import (
    KfpTarget,
    PodsNamespace,
    call,
    make_client,
    pods_namespace,
    read_multi_user,
)
from monGARS.deploy.pipeline_package import PipelinePackage
from monGARS.mlops.errors import MongarsError

SUCCEEDED = "SUCCEEDED"
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"})
_EQUALS = "EQUALS"


@dataclass(frozen=True)
class RunRequest:
    """Everything one submission needs, already validated."""

    package: PipelinePackage
    experiment: str
    run_name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    pipeline_name: str | None = None
    version_name: str | None = None
    service_account: str | None = None
    pipeline_root: str | None = None


@dataclass(frozen=True)
class SubmitResult:
    run_id: str
    experiment_id: str
    state: str
    pipeline_id: str | None = None
    version_id: str | None = None
    error: str = ""


def _name_filter(name: str) -> str:
    import json

    return json.dumps(
        {"predicates": [{"operation": _EQUALS, "key": "display_name", "stringValue": name}]}
    )


def ensure_experiment(client: Any, target: KfpTarget, name: str) -> str:
    """The id of experiment ``name`` in the target namespace, created when missing."""
    try:
        experiment = call(
            target,
            "create experiment",
            client.create_experiment,
            name=name,
            namespace=target.namespace or None,
        )
    except ValueError as error:  # kfp: several experiments share the name
        raise MongarsError(f"--experiment {name!r}: {error}") from None
    return str(experiment.experiment_id)


def ensure_pipeline_version(
    client: Any, target: KfpTarget, package: PipelinePackage, pipeline_name: str, version_name: str
) -> tuple[str, str]:
    """Upload ``package`` as ``pipeline_name`` / ``version_name`` unless already there."""
    try:
        pipeline_id = call(target, "find pipeline", client.get_pipeline_id, pipeline_name)
    except ValueError as error:  # kfp: several pipelines share the name
        raise MongarsError(f"--pipeline-name {pipeline_name!r}: {error}") from None
    if pipeline_id is None:
        pipeline = call(
            target,
            "upload pipeline",
            client.upload_pipeline,
            pipeline_package_path=str(package.path),
            pipeline_name=pipeline_name,
            namespace=target.namespace or None,
        )
        pipeline_id = str(pipeline.pipeline_id)
    versions = call(
        target,
        "find pipeline version",
        client.list_pipeline_versions,
        pipeline_id=pipeline_id,
        filter=_name_filter(version_name),
    )
    existing = versions.pipeline_versions or []
    if existing:
        return pipeline_id, str(existing[0].pipeline_version_id)
    version = call(
        target,
        "upload pipeline version",
        client.upload_pipeline_version,
        pipeline_package_path=str(package.path),
        pipeline_version_name=version_name,
        pipeline_id=pipeline_id,
    )
    return pipeline_id, str(version.pipeline_version_id)


def pipeline_source(client: Any, target: KfpTarget, request: RunRequest) -> dict[str, Any]:
    """What a run or recurring run starts from: the uploaded pipeline version when a pipeline
    name is given (so the UI lists it), else the compiled package itself."""
    if not request.pipeline_name:
        return {"pipeline_package_path": str(request.package.path)}
    pipeline_id, version_id = ensure_pipeline_version(
        client, target, request.package, request.pipeline_name, request.version_name or ""
    )
    return {"pipeline_id": pipeline_id, "version_id": version_id}


def create_run(client: Any, target: KfpTarget, request: RunRequest) -> SubmitResult:
    """Create the run (experiment and, when asked, pipeline version first)."""
    experiment_id = ensure_experiment(client, target, request.experiment)
    source = pipeline_source(client, target, request)
    pipeline_id, version_id = source.get("pipeline_id"), source.get("version_id")
    run = call(
        target,
        "create run",
        client.run_pipeline,
        experiment_id=experiment_id,
        job_name=request.run_name,
        params=request.parameters,
        pipeline_root=request.pipeline_root,
        service_account=request.service_account,
        **source,
    )
    return SubmitResult(
        run_id=str(run.run_id),
        experiment_id=experiment_id,
        state=str(run.state or "PENDING"),
        pipeline_id=pipeline_id,
        version_id=version_id,
    )


def wait_for_run(
    client: Any,
    target: KfpTarget,
    run_id: str,
    *,
    timeout_s: float,
    poll_s: float,
    on_state: Callable[[str], None] = lambda state: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, str]:
    """Poll the run until it reaches a terminal state; return (state, error message).

    kfp's own ``wait_for_run_completion`` does not treat CANCELED as final; this does.
    """
    deadline = clock() + timeout_s
    last = ""
    while True:
        run = call(target, "get run", client.get_run, run_id)
        state = str(run.state or "PENDING")
        if state != last:
            on_state(state)
            last = state
        if state in TERMINAL_STATES:
            error = getattr(run, "error", None)
            message = str(getattr(error, "message", "") or "") if error is not None else ""
            return state, message
        if clock() >= deadline:
            return state, f"still {state} after {timeout_s:.0f} s (--timeout)"
        sleep(poll_s)


PodsCheck = Callable[[PodsNamespace], None]


def connect(
    target: KfpTarget,
    request: RunRequest,
    echo: Callable[[str], None],
    check_pods: PodsCheck | None = None,
) -> Any:
    """A client for ``target`` once the server's release and mode fit, and the namespace the
    pods will really run in is known (and, with ``check_pods``, checked) — before anything is
    created."""
    client = make_client(target, request.package.backend_version)
    pods = pods_namespace(read_multi_user(client, target), target, request.service_account)
    echo(pods.describe())
    if check_pods is not None:
        check_pods(pods)
    return client


def submit(
    target: KfpTarget,
    request: RunRequest,
    *,
    wait: bool = False,
    timeout_s: float = 86_400.0,
    poll_s: float = 30.0,
    echo: Callable[[str], None] = print,
    check_pods: PodsCheck | None = None,
) -> SubmitResult:
    """Create the run and, with ``wait``, follow it to its final state."""
    client = connect(target, request, echo, check_pods)
    result = create_run(client, target, request)
    echo(f"run {result.run_id} created: {request.run_name!r} in experiment {request.experiment!r}")
    if target.host:
        echo(f"  {target.host.rstrip('/')}/#/runs/details/{result.run_id}")
    if not wait:
        return result
    state, error = wait_for_run(
        client,
        target,
        result.run_id,
        timeout_s=timeout_s,
        poll_s=poll_s,
        on_state=lambda s: echo(f"  state: {s}"),
    )
    return SubmitResult(
        run_id=result.run_id,
        experiment_id=result.experiment_id,
        state=state,
        pipeline_id=result.pipeline_id,
        version_id=result.version_id,
        error=error,
    )
