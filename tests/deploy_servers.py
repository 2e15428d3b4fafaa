"""Local HTTP servers that speak the parts of the KFP v2beta1 and Kubernetes APIs the CLI uses.

``mongars submit``/``schedule`` and ``preflight`` are tested end to end through the real clients
(kfp.Client, the kubernetes client) against these servers on 127.0.0.1. Request bodies are checked
against the kfp_server_api models (unknown fields and wrong types are refused with 400, as the
real grpc-gateway does), pipeline specs must parse as the KFP PipelineSpec proto, and every
Kubernetes object a test serves is first validated against the Kubernetes JSON schema (strict).
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

KUBERNETES_VERSION = "1.33.0"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- validation against the kfp_server_api models -------------------------------------------


def model_problems(payload: Any, type_name: str, where: str = "body") -> list[str]:
    """Problems of ``payload`` (a JSON value) against a kfp_server_api type name."""
    import kfp_server_api

    if type_name == "object":
        return []
    if type_name == "str":
        # int64 fields are declared as str; grpc-gateway accepts JSON numbers for them too.
        ok = isinstance(payload, str) or (
            isinstance(payload, int) and not isinstance(payload, bool)
        )
        return [] if ok else [f"{where}: expected string, got {payload!r}"]
    if type_name == "int":
        ok = isinstance(payload, int) and not isinstance(payload, bool)
        return [] if ok else [f"{where}: expected integer, got {payload!r}"]
    if type_name == "bool":
        return [] if isinstance(payload, bool) else [f"{where}: expected boolean, got {payload!r}"]
    if type_name == "datetime":
        try:
            datetime.fromisoformat(str(payload).replace("Z", "+00:00"))
        except ValueError:
            return [f"{where}: expected RFC 3339 time, got {payload!r}"]
        return []
    if type_name.startswith("list["):
        if not isinstance(payload, list):
            return [f"{where}: expected list"]
        inner = type_name[5:-1]
        return [
            p
            for i, item in enumerate(payload)
            for p in model_problems(item, inner, f"{where}[{i}]")
        ]
    if type_name.startswith("dict("):
        if not isinstance(payload, dict):
            return [f"{where}: expected object"]
        inner = type_name[5:-1].split(",", 1)[1].strip()
        return [p for k, v in payload.items() for p in model_problems(v, inner, f"{where}.{k}")]
    model = getattr(kfp_server_api.models, type_name)
    allowed = getattr(model, "allowable_values", None)
    if allowed is not None:
        return [] if payload in allowed else [f"{where}: {payload!r} is not one of {allowed}"]
    if not isinstance(payload, dict):
        return [f"{where}: expected {type_name} object"]
    by_json_key = {json_key: attr for attr, json_key in model.attribute_map.items()}
    problems = []
    for key, value in payload.items():
        if key not in by_json_key:
            problems.append(f"{where}: unknown field {key!r} for {type_name}")
        elif value is not None:
            problems += model_problems(
                value, model.openapi_types[by_json_key[key]], f"{where}.{key}"
            )
    return problems


def spec_problems(pipeline_spec: dict[str, Any]) -> list[str]:
    """The run's inline spec must parse as PipelineSpec (and PlatformSpec when present)."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    documents = (
        (pipeline_spec["pipeline_spec"], pipeline_spec.get("platform_spec", {}))
        if "pipeline_spec" in pipeline_spec
        else (pipeline_spec, {})
    )
    try:
        json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec())
        json_format.ParseDict(documents[1], pipeline_spec_pb2.PlatformSpec())
    except json_format.ParseError as error:
        return [f"pipeline_spec: {error}"]
    return []


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- KFP ------------------------------------------------------------------------------------


@dataclass
class KfpState:
    """What the KFP server holds, inspectable by tests."""

    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    recurring_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    authorization: list[str] = field(default_factory=list)
    # States a run walks through, one per GET after creation; the last one sticks.
    run_script: list[str] = field(default_factory=lambda: ["RUNNING", "SUCCEEDED"])
    run_error: str = ""
    required_token: str | None = None
    # The release the v1beta1 healthz reports (tag_name); None: the field is absent.
    server_version: str | None = "2.15.0"
    # apiserver MULTIUSER; single-user replaces every namespace with "" (resource_manager.go:
    # ReplaceNamespace) and runs the workflow in its own POD_NAMESPACE (CreateRun).
    multi_user: bool = False
    pod_namespace: str = "kubeflow"
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self.ids):04d}"


def _filter_name(query: dict[str, list[str]]) -> str | None:
    raw = query.get("filter", [""])[0]
    if not raw:
        return None
    predicates = json.loads(raw).get("predicates", [])
    for predicate in predicates:
        if predicate.get("key") in ("display_name", "name"):
            return str(predicate.get("stringValue", predicate.get("string_value")))
    return None


def _multipart_file(headers: Any, body: bytes) -> bytes:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            return part.get_payload(decode=True)
    raise ApiError(400, "multipart body has no uploadfile part")


class KfpHandler(BaseHTTPRequestHandler):
    state: KfpState

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        return

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json(self, model: str) -> dict[str, Any]:
        try:
            payload = json.loads(self._body() or b"{}")
        except json.JSONDecodeError as error:
            raise ApiError(400, f"body is not JSON: {error}") from None
        problems = model_problems(payload, model)
        if problems:
            raise ApiError(400, "; ".join(problems))
        return payload

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self.state.requests.append((method, url.path))
        self.state.authorization.append(self.headers.get("Authorization", ""))
        try:
            if (
                self.state.required_token is not None
                and self.headers.get("Authorization") != f"Bearer {self.state.required_token}"
            ):
                raise ApiError(401, "Unauthenticated: invalid or missing bearer token")
            payload = self._route(method, url.path, query)
        except ApiError as error:
            code = {400: 3, 401: 16, 404: 5, 409: 6}.get(error.status, 2)
            self._reply(
                error.status, {"error": error.message, "code": code, "message": error.message}
            )
            return
        self._reply(200, payload)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> Any:
        state = self.state
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts == ["apis", "v1beta1", "healthz"] and method == "GET":
            release = {"tag_name": state.server_version} if state.server_version else {}
            return {"commit_sha": "0" * 40, "multi_user": state.multi_user, **release}
        if parts[:2] != ["apis", "v2beta1"]:
            raise ApiError(404, f"no route for {path}")
        route = parts[2:]
        if route == ["healthz"] and method == "GET":
            return {"multi_user": state.multi_user, "pipeline_store": "database"}
        if route == ["experiments"] and method == "GET":
            name = _filter_name(query)
            # Single-user: ReplaceNamespace("x") == "" (every experiment is namespace-less).
            namespace = query.get("namespace", [None])[0] if state.multi_user else None
            found = [
                e
                for e in state.experiments.values()
                if (name is None or e["display_name"] == name)
                and (not namespace or e.get("namespace", "") == namespace)
            ]
            return {"experiments": found, "total_size": len(found)} if found else {}
        if route == ["experiments"] and method == "POST":
            body = self._json("V2beta1Experiment")
            if not body.get("display_name"):
                raise ApiError(400, "experiment display_name is required")
            body["namespace"] = body.get("namespace", "") if state.multi_user else ""
            if state.multi_user and not body["namespace"]:
                raise ApiError(
                    400,
                    "Invalid input error: Resource cannot have an empty namespace and experiment "
                    "id in multi-user mode",
                )
            experiment = {
                **body,
                "experiment_id": state.new_id("exp"),
                "created_at": _now(),
                "storage_state": "AVAILABLE",
            }
            state.experiments[experiment["experiment_id"]] = experiment
            return experiment
        if route == ["pipelines"] and method == "GET":
            name = _filter_name(query)
            found = [
                p for p in state.pipelines.values() if name is None or p["display_name"] == name
            ]
            return {"pipelines": found, "total_size": len(found)} if found else {}
        if route == ["pipelines", "upload"] and method == "POST":
            spec = self._uploaded_spec()
            name = query.get("name", query.get("display_name", [""]))[0]
            if not name:
                raise ApiError(400, "pipeline name is required")
            if any(p["display_name"] == name for p in state.pipelines.values()):
                raise ApiError(409, f"pipeline {name} already exists")
            pipeline = {
                "pipeline_id": state.new_id("pipeline"),
                "display_name": name,
                "created_at": _now(),
                "namespace": query.get("namespace", [""])[0],
            }
            state.pipelines[pipeline["pipeline_id"]] = pipeline
            self._add_version(pipeline["pipeline_id"], name, spec)
            return pipeline
        if route == ["pipelines", "upload_version"] and method == "POST":
            spec = self._uploaded_spec()
            pipeline_id = query.get("pipelineid", [""])[0]
            name = query.get("name", [""])[0]
            if pipeline_id not in state.pipelines:
                raise ApiError(404, f"pipeline {pipeline_id} not found")
            if any(
                v["pipeline_id"] == pipeline_id and v["display_name"] == name
                for v in state.versions.values()
            ):
                raise ApiError(409, f"pipeline version {name} already exists")
            return self._add_version(pipeline_id, name, spec)
        if (
            len(route) == 3
            and route[0] == "pipelines"
            and route[2] == "versions"
            and method == "GET"
        ):
            name = _filter_name(query)
            found = [
                {k: v for k, v in version.items() if k != "pipeline_spec"}
                for version in state.versions.values()
                if version["pipeline_id"] == route[1]
                and (name is None or version["display_name"] == name)
            ]
            return {"pipeline_versions": found, "total_size": len(found)} if found else {}
        if route == ["runs"] and method == "POST":
            body = self._json("V2beta1Run")
            self._check_run_like(body)
            experiment = state.experiments.get(body.get("experiment_id", ""), {})
            run = {
                **body,
                # Where CreateRun puts the Argo workflow: the experiment's namespace, or the
                # server's own when it has none (always, single-user).
                "_pods_namespace": experiment.get("namespace") or state.pod_namespace,
                "run_id": state.new_id("run"),
                "state": "PENDING",
                "created_at": _now(),
                "storage_state": "AVAILABLE",
            }
            run["_polls"] = 0
            state.runs[run["run_id"]] = run
            return {k: v for k, v in run.items() if not k.startswith("_")}
        if len(route) == 2 and route[0] == "runs" and method == "GET":
            run = state.runs.get(route[1])
            if run is None:
                raise ApiError(404, f"run {route[1]} not found")
            step = min(run["_polls"], len(state.run_script) - 1)
            run["_polls"] += 1
            run["state"] = state.run_script[step]
            reply = {k: v for k, v in run.items() if not k.startswith("_")}
            if run["state"] == "FAILED" and state.run_error:
                reply["error"] = {"code": 2, "message": state.run_error}
            return reply
        if route == ["recurringruns"] and method == "POST":
            body = self._json("V2beta1RecurringRun")
            self._check_run_like(body)
            cron = ((body.get("trigger") or {}).get("cron_schedule") or {}).get("cron", "")
            if not cron or (not cron.startswith("@") and len(cron.split()) != 6):
                raise ApiError(400, f"invalid cron schedule {cron!r}")
            concurrency = int(body.get("max_concurrency") or 1)
            if not 1 <= concurrency <= 10:
                raise ApiError(400, "max concurrency must be in [1, 10]")
            recurring = {
                **body,
                "recurring_run_id": state.new_id("recurring"),
                "created_at": _now(),
                "status": "ENABLED" if body.get("mode") == "ENABLE" else "DISABLED",
            }
            state.recurring_runs[recurring["recurring_run_id"]] = recurring
            return recurring
        raise ApiError(404, f"no route for {method} {path}")

    def _uploaded_spec(self) -> dict[str, Any]:
        raw = _multipart_file(self.headers, self._body())
        documents = [d for d in yaml.safe_load_all(raw) if d]
        spec = {
            "pipeline_spec": documents[0],
            "platform_spec": documents[1] if len(documents) > 1 else {},
        }
        problems = spec_problems(spec)
        if problems:
            raise ApiError(400, "; ".join(problems))
        return spec

    def _add_version(self, pipeline_id: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": self.state.new_id("version"),
            "display_name": name,
            "created_at": _now(),
            "pipeline_spec": spec,
        }
        self.state.versions[version["pipeline_version_id"]] = version
        return {k: v for k, v in version.items() if k != "pipeline_spec"}

    def _check_run_like(self, body: dict[str, Any]) -> None:
        if not body.get("display_name"):
            raise ApiError(400, "display_name is required")
        experiment_id = body.get("experiment_id")
        if experiment_id and experiment_id not in self.state.experiments:
            raise ApiError(404, f"experiment {experiment_id} not found")
        has_spec = bool(body.get("pipeline_spec"))
        reference = body.get("pipeline_version_reference") or {}
        if has_spec == bool(reference):
            raise ApiError(400, "give exactly one of pipeline_spec and pipeline_version_reference")
        if has_spec:
            problems = spec_problems(body["pipeline_spec"])
            if problems:
                raise ApiError(400, "; ".join(problems))
        elif reference.get("pipeline_version_id") not in self.state.versions:
            raise ApiError(404, "pipeline version not found")


@contextlib.contextmanager
def kfp_server() -> Iterator[tuple[str, KfpState]]:
    """Run a KFP API server on a free loopback port; yield (host URL, state)."""
    state = KfpState()
    handler = type("BoundKfpHandler", (KfpHandler,), {"state": state})
    with _serving(handler) as host:
        yield host, state


# --- Kubernetes -----------------------------------------------------------------------------


@dataclass
class KubeState:
    nodes: list[dict[str, Any]] = field(default_factory=list)
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pvcs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    service_accounts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    storage_classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)  # resource names answered with 403
    requests: list[str] = field(default_factory=list)
    authorization: list[str] = field(default_factory=list)

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object after validating it against the Kubernetes schema (strict)."""
        import kubernetes_validate

        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        kind, meta = obj["kind"], obj["metadata"]
        if kind == "Node":
            self.nodes.append(obj)
        elif kind == "Secret":
            self.secrets[(meta["namespace"], meta["name"])] = obj
        elif kind == "PersistentVolumeClaim":
            self.pvcs[(meta["namespace"], meta["name"])] = obj
        elif kind == "ServiceAccount":
            self.service_accounts[(meta["namespace"], meta["name"])] = obj
        elif kind == "StorageClass":
            self.storage_classes[meta["name"]] = obj
        else:
            raise ValueError(f"this server does not serve {kind}")
        return obj


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes equality-based selectors (k=v, k==v, k!=v) and existence (k, !k)."""
    for requirement in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in requirement:
            key, value = requirement.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in requirement:
            key, value = requirement.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif requirement.startswith("!"):
            if requirement[1:] in labels:
                return False
        elif " " in requirement or "(" in requirement:
            raise ApiError(400, f"unsupported selector {requirement!r}")
        elif requirement not in labels:
            return False
    return True


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class KubeHandler(BaseHTTPRequestHandler):
    state: KubeState

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        self.state.requests.append(self.path)
        self.state.authorization.append(self.headers.get("Authorization", ""))
        state = self.state
        try:
            if parts == ["api", "v1", "nodes"]:
                if "nodes" in state.forbidden:
                    raise ApiError(403, 'nodes is forbidden: cannot list resource "nodes"')
                selector = parse_qs(url.query).get("labelSelector", [""])[0]
                items = [
                    n
                    for n in state.nodes
                    if label_selector_matches(selector, n["metadata"].get("labels", {}))
                ]
                self._reply(
                    200,
                    {
                        "kind": "NodeList",
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": "1"},
                        "items": items,
                    },
                )
                return
            if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"]:
                namespace, resource, name = parts[3], parts[4], parts[5]
                table = {
                    "secrets": state.secrets,
                    "persistentvolumeclaims": state.pvcs,
                    "serviceaccounts": state.service_accounts,
                }.get(resource)
                if table is None:
                    raise ApiError(
                        404, f"the server could not find the requested resource {resource}"
                    )
                if resource in state.forbidden:
                    raise ApiError(403, f'{resource} "{name}" is forbidden')
                found = table.get((namespace, name))
                if found is None:
                    raise ApiError(404, f'{resource} "{name}" not found')
                self._reply(200, found)
                return
            if parts[:4] == ["apis", "storage.k8s.io", "v1", "storageclasses"] and len(parts) == 5:
                found = state.storage_classes.get(parts[4])
                if found is None:
                    raise ApiError(404, f'storageclasses.storage.k8s.io "{parts[4]}" not found')
                self._reply(200, found)
                return
            raise ApiError(404, "the server could not find the requested resource")
        except ApiError as error:
            reason = {400: "BadRequest", 403: "Forbidden", 404: "NotFound"}.get(
                error.status, "InternalError"
            )
            self._reply(error.status, _status(error.status, reason, error.message))


@contextlib.contextmanager
def kube_server(tmp_path: Path, namespace: str = "team-ml") -> Iterator[tuple[Path, KubeState]]:
    """Run a Kubernetes API server; yield (kubeconfig path pointing at it, state)."""
    state = KubeState()
    handler = type("BoundKubeHandler", (KubeHandler,), {"state": state})
    with _serving(handler) as host:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "local", "cluster": {"server": host}}],
                    "users": [{"name": "tester", "user": {"token": "kube-test-token"}}],
                    "contexts": [
                        {
                            "name": "local",
                            "context": {
                                "cluster": "local",
                                "user": "tester",
                                "namespace": namespace,
                            },
                        }
                    ],
                    "current-context": "local",
                }
            ),
            encoding="utf-8",
        )
        yield kubeconfig, state


@contextlib.contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="test-api-server",
        daemon=True,
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
