"""``mongars submit | schedule | preflight``: argparse wiring for the cluster commands.

``add_deploy_subcommands(subparsers)`` adds the three commands to the ``mongars`` parser; each sets
``handler`` to a function taking the parsed namespace and returning the exit code. User mistakes
raise ``MongarsError`` (the ``mongars`` entry point prints it as one ``error:`` line, exit 2).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monGARS.deploy.kfp_api import DEFAULT_KFP_NAMESPACE
from monGARS.mlops.errors import MongarsError
from monGARS.pipelines.compile import COMPILED_PIPELINE

DEFAULT_EXPERIMENT = "mongars"


def _add_target_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("Kubeflow Pipelines")
    target.add_argument(
        "--host",
        help="KFP API endpoint, e.g. http://localhost:8888 after `kubectl -n kubeflow "
        "port-forward svc/ml-pipeline 8888:8888` (default: $KF_PIPELINES_ENDPOINT, in-cluster, "
        "or kubeconfig proxy). The bearer token, if any, is read from $KFP_TOKEN.",
    )
    target.add_argument(
        "--namespace",
        help="profile namespace (multi-user Kubeflow; required there). A single-user KFP runs "
        "every pod in its own namespace (--kfp-namespace) and refuses to pretend otherwise",
    )
    target.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="created when missing")
    target.add_argument(
        "--service-account",
        help="Kubernetes service account the run's pods use (default: the server's, "
        "pipeline-runner single-user / default-editor multi-user)",
    )
    _add_cluster_arguments(parser)
    target.add_argument(
        "--check-cluster",
        action="store_true",
        help="before creating anything, check the service account, Secret and PVC in the "
        "namespace the pods will run in (needs kubeconfig credentials; see --kubeconfig)",
    )


def _add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kfp-namespace",
        default=DEFAULT_KFP_NAMESPACE,
        help="where a single-user (standalone) KFP is installed and runs every pod "
        f"(default {DEFAULT_KFP_NAMESPACE})",
    )
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    parser.add_argument("--context", help="kubeconfig context (default: current)")


def _add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    pipeline = parser.add_argument_group("pipeline")
    pipeline.add_argument(
        "--package",
        help="compiled pipeline YAML (e.g. pipelines/mongars.yaml); default: compile from source",
    )
    pipeline.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pipeline parameter (repeatable); lists/dicts as JSON, e.g. "
        '--param gpu_node_selector=\'{"cloud.google.com/gke-accelerator": "nvidia-l4"}\'',
    )
    pipeline.add_argument("--params-file", help="YAML/JSON mapping of parameters (--param wins)")
    pipeline.add_argument(
        "--pipeline-name",
        help="upload the YAML as this pipeline (a version per distinct YAML) and run that version",
    )
    pipeline.add_argument("--pipeline-version", help="version name (default: <version>-<sha12>)")
    pipeline.add_argument("--pipeline-root", help="artifact root, e.g. gs://bucket/mongars")
    pipeline.add_argument(
        "--no-cache",
        action="store_true",
        help="run every task again, loop tasks included (the YAML sent or uploaded has caching "
        "off in every DAG; an uploaded version gets its own name)",
    )


def add_deploy_subcommands(subparsers: Any) -> None:
    """Register ``submit``, ``schedule`` and ``preflight`` on an argparse subparsers object."""
    submit = subparsers.add_parser("submit", help="start a run on Kubeflow Pipelines")
    _add_target_arguments(submit)
    _add_pipeline_arguments(submit)
    submit.add_argument("--run-name", help="default: mongars-<UTC time>")
    submit.add_argument("--wait", action="store_true", help="follow the run to its final state")
    submit.add_argument("--timeout", type=float, default=86_400.0, help="--wait limit, seconds")
    submit.add_argument("--poll-interval", type=float, default=30.0, help="seconds between polls")
    submit.set_defaults(handler=submit_command)

    schedule = subparsers.add_parser("schedule", help="create a recurring run (cron)")
    _add_target_arguments(schedule)
    _add_pipeline_arguments(schedule)
    schedule.add_argument(
        "--cron",
        required=True,
        help="six fields, seconds first (KFP): '0 0 2 * * *' = 02:00 daily; five-field specs "
        "are converted; @daily/@every 6h work too",
    )
    schedule.add_argument("--name", default="mongars-schedule", help="recurring run name")
    schedule.add_argument("--max-concurrency", type=int, default=1, help="1-10 runs at once")
    schedule.add_argument(
        "--catchup",
        action="store_true",
        help="backfill missed slots after a pause (off by default)",
    )
    schedule.add_argument("--disabled", action="store_true", help="create it paused")
    schedule.add_argument("--start-time", help="RFC 3339, e.g. 2026-01-31T02:00:00Z")
    schedule.add_argument("--end-time", help="RFC 3339")
    schedule.set_defaults(handler=schedule_command)

    preflight = subparsers.add_parser(
        "preflight", help="check the cluster has the GPU nodes, Secret and PVC a run needs"
    )
    _add_cluster_arguments(preflight)
    preflight.add_argument(
        "--namespace",
        help="profile namespace runs go to (multi-user; default: the context's namespace). "
        "With --host, a single-user KFP is detected and --kfp-namespace is checked instead",
    )
    preflight.add_argument(
        "--service-account",
        help="the account runs use (default: the KFP default for the server's mode)",
    )
    preflight.add_argument(
        "--package",
        help="compiled pipeline YAML whose defaults apply (default: pipelines/mongars.yaml)",
    )
    preflight.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    preflight.add_argument("--params-file", help="the same parameters file you submit with")
    preflight.add_argument(
        "--allow-scale-from-zero",
        action="store_true",
        help="no GPU node yet is a warning (node pools that autoscale from zero)",
    )
    preflight.add_argument("--strict", action="store_true", help="warnings fail too")
    preflight.add_argument(
        "--host",
        help="KFP API endpoint whose release is checked against the pipeline's minimum "
        "(default: $KF_PIPELINES_ENDPOINT; without either the check is skipped with a warning)",
    )
    preflight.set_defaults(handler=preflight_command)


# --- handlers ------------------------------------------------------------------------------


def _package(args: argparse.Namespace, scratch: Path) -> Any:
    from monGARS.deploy.pipeline_package import compile_package, load_package

    if args.package:
        return load_package(args.package)
    return compile_package(scratch / "mongars.yaml")


def _run_request(args: argparse.Namespace, package: Any, run_name: str, scratch: Path) -> Any:
    from monGARS.deploy.pipeline_package import (
        default_version_name,
        parse_param_flags,
        read_params_file,
        resolve_parameters,
        without_cache,
    )
    from monGARS.deploy.submit import RunRequest
    from monGARS.mlops.names import check_safe_name
    from monGARS.version import __version__

    file_values = read_params_file(args.params_file) if args.params_file else {}
    parameters = resolve_parameters(package, parse_param_flags(args.param), file_values)
    if args.no_cache:  # every task of every DAG, in the YAML itself: works for --pipeline-name too
        package = without_cache(package, scratch / "mongars-no-cache.yaml")
    if args.pipeline_version and not args.pipeline_name:
        raise MongarsError("--pipeline-version: only meaningful with --pipeline-name")
    version_name = args.pipeline_version or default_version_name(package, __version__)
    if args.pipeline_name:
        check_safe_name("--pipeline-name", args.pipeline_name)
        check_safe_name("--pipeline-version", version_name)
    if not args.experiment.strip():
        raise MongarsError("--experiment: give a non-empty experiment name")
    return RunRequest(
        package=package,
        experiment=args.experiment,
        run_name=run_name,
        parameters=parameters,
        pipeline_name=args.pipeline_name,
        version_name=version_name,
        service_account=args.service_account,
        pipeline_root=args.pipeline_root,
    )


def _target(args: argparse.Namespace) -> Any:
    from monGARS.deploy.kfp_api import KfpTarget

    host = args.host
    if host is not None and not host.startswith(("http://", "https://")):
        raise MongarsError(f"--host: {host!r} needs a scheme, e.g. http://localhost:8888")
    return KfpTarget(host=host, namespace=args.namespace, kfp_namespace=args.kfp_namespace)


def _pods_check(args: argparse.Namespace, package: Any, parameters: dict[str, Any]) -> Any:
    """With ``--check-cluster``: a check of the namespace the pods will run in, run by submit /
    schedule once the server's mode is known; it refuses the submission on any failure."""
    if not args.check_cluster:
        return None
    from monGARS.deploy.preflight import (
        check_namespace_objects,
        format_findings,
        kube_api_client,
        placement_from,
    )

    placement = placement_from({**package.defaults(), **parameters}, package.accelerator)
    api_client = kube_api_client(args.kubeconfig, args.context)

    def check(pods: Any) -> None:
        findings = check_namespace_objects(
            api_client,
            pods.namespace,
            placement,
            service_account=pods.service_account,
            parallelism=package.parallelism,
        )
        report, code = format_findings(findings)
        print(report)
        if code:
            raise MongarsError(
                f"--check-cluster: namespace {pods.namespace} lacks what the pods need (above); "
                "nothing was created"
            )

    return check


def submit_command(args: argparse.Namespace) -> int:
    from monGARS.deploy.submit import SUCCEEDED, TERMINAL_STATES, submit

    if args.timeout <= 0 or args.poll_interval <= 0:
        raise MongarsError("--timeout/--poll-interval: must be > 0 seconds")
    run_name = args.run_name or f"mongars-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    with tempfile.TemporaryDirectory(prefix="mongars-submit-") as scratch:
        package = _package(args, Path(scratch))
        request = _run_request(args, package, run_name, Path(scratch))
        result = submit(
            _target(args),
            request,
            check_pods=_pods_check(args, request.package, request.parameters),
            wait=args.wait,
            timeout_s=args.timeout,
            poll_s=args.poll_interval,
        )
    if not args.wait:
        return 0
    detail = f" ({result.error})" if result.error else ""
    print(f"run {result.run_id} finished: {result.state}{detail}")
    if result.state == SUCCEEDED:
        return 0
    return 1 if result.state in TERMINAL_STATES else 3


def schedule_command(args: argparse.Namespace) -> int:
    from monGARS.deploy.schedule import parse_cron, schedule

    parse_cron(args.cron)  # refuse a bad spec before compiling or connecting
    with tempfile.TemporaryDirectory(prefix="mongars-schedule-") as scratch:
        package = _package(args, Path(scratch))
        request = _run_request(args, package, args.name, Path(scratch))
        schedule(
            _target(args),
            request,
            cron=args.cron,
            max_concurrency=args.max_concurrency,
            catchup=args.catchup,
            enabled=not args.disabled,
            start_time=args.start_time,
            end_time=args.end_time,
            check_pods=_pods_check(args, request.package, request.parameters),
        )
    return 0


def preflight_command(args: argparse.Namespace) -> int:
    import os

    from monGARS.deploy.kfp_api import HOST_ENV, TOKEN_ENV, ServerInfo, server_info
    from monGARS.deploy.pipeline_package import (
        load_package,
        parse_param_flags,
        read_params_file,
        resolve_parameters,
    )
    from monGARS.deploy.preflight import (
        Finding,
        check_kfp_version,
        format_findings,
        kube_api_client,
        placement_from,
        run_preflight,
    )

    package = load_package(args.package or COMPILED_PIPELINE)
    file_values = read_params_file(args.params_file) if args.params_file else {}
    given = resolve_parameters(package, parse_param_flags(args.param), file_values)
    placement = placement_from({**package.defaults(), **given}, package.accelerator)
    api_client = kube_api_client(args.kubeconfig, args.context)
    endpoint = args.host or os.environ.get(HOST_ENV)
    info = (
        server_info(endpoint, os.environ.get(TOKEN_ENV) or None)
        if endpoint
        else ServerInfo(None, None)
    )
    minimum = package.backend_version
    findings = [
        check_kfp_version(info.release, minimum)
        if endpoint
        else Finding(
            "warn",
            "kfp-version",
            f"KFP release not checked (needs {minimum[0]}.{minimum[1]}+)",
            f"give --host or set {HOST_ENV}",
        )
    ]
    namespace, account, mode_finding = _preflight_namespace(args, info)
    findings.append(mode_finding)
    findings += run_preflight(
        api_client,
        namespace,
        placement,
        allow_scale_from_zero=args.allow_scale_from_zero,
        service_account=account,
        parallelism=package.parallelism,
    )
    report, code = format_findings(findings, strict=args.strict)
    print(f"preflight for namespace {namespace} on {api_client.configuration.host}")
    print(report)
    return code


def _preflight_namespace(args: argparse.Namespace, info: Any) -> tuple[str, str | None, Any]:
    """Where the pods will run (and as whom), from the server's mode when it answered."""
    from monGARS.deploy.kfp_api import KfpTarget, pods_namespace
    from monGARS.deploy.preflight import Finding, default_namespace

    context_namespace = default_namespace(args.kubeconfig, args.context)
    if info.multi_user is None:
        namespace = args.namespace or context_namespace
        if not namespace:
            raise MongarsError("--namespace: give the namespace runs go to (the context sets none)")
        return (
            namespace,
            args.service_account,
            Finding(
                "warn",
                "kfp-mode",
                f"KFP mode unknown: pods run in {namespace} only on a multi-user KFP; a "
                f"single-user one runs them in its own namespace ({args.kfp_namespace})",
                "give --host or set the KFP endpoint in $KF_PIPELINES_ENDPOINT",
            ),
        )
    wanted = args.namespace or (context_namespace if info.multi_user else None)
    target = KfpTarget(None, wanted, args.kfp_namespace)
    try:
        pods = pods_namespace(info.multi_user, target, args.service_account)
    except MongarsError as error:
        if info.multi_user:
            raise
        # Single-user and a namespace it would ignore: say so, and check where pods really go.
        pods = pods_namespace(False, KfpTarget(None, None, args.kfp_namespace), None)
        pods = type(pods)(pods.namespace, args.service_account or pods.service_account, False)
        return pods.namespace, pods.service_account, Finding("fail", "kfp-mode", str(error))
    return pods.namespace, pods.service_account, Finding("ok", "kfp-mode", pods.describe())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monGARS.deploy.cli``: the three commands without the rest of ``mongars``."""
    parser = argparse.ArgumentParser(prog="mongars", description="cluster commands")
    add_deploy_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except MongarsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
