"""Render a kustomization offline, for the subset of kustomize that ``manifests/`` uses.

The cluster side uses the real tool (``kubectl apply -k``). This renderer exists so tests can check
the rendered objects against the Kubernetes schemas without a kustomize binary. It follows
kustomize's semantics for what it supports (resources, namespace, labels, commonAnnotations,
patches: strategic merge and JSON 6902) and refuses every other field with a one-line error instead
of silently rendering something kustomize would not.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from monGARS.mlops.errors import MongarsError

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = frozenset(
    {"apiVersion", "kind", "resources", "namespace", "labels", "commonAnnotations", "patches"}
)

# Kinds that have no namespace. kustomize reads this from its OpenAPI data; these are the
# cluster-scoped kinds a pipeline's manifests plausibly contain.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "RuntimeClass",
        "Node",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
)

# Strategic-merge list keys of the core types (from the Kubernetes API's patchMergeKey markers).
# Lists not named here are replaced by the patch, as strategic merge does for atomic lists.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "env": "name",
    "imagePullSecrets": "name",
}


def _load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    try:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise MongarsError(
            f"{path}: not found; check the kustomization's resources/patches"
        ) from None
    except yaml.YAMLError as error:
        raise MongarsError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    objects = [doc for doc in documents if doc is not None]
    for obj in objects:
        if not isinstance(obj, dict):
            raise MongarsError(f"{path}: every YAML document must be a mapping")
    return objects


def find_kustomization(folder: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise MongarsError(f"{folder}: no kustomization.yaml; a kustomize resource folder needs one")


def resource_id(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    """(group, kind, namespace, name): the identity kustomize uses to find and de-duplicate."""
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.split("/")[0] if "/" in api_version else ""
    metadata = obj.get("metadata") or {}
    return (
        group,
        str(obj.get("kind", "")),
        str(metadata.get("namespace", "")),
        str(metadata.get("name", "")),
    )


def render(folder: str | Path) -> list[dict[str, Any]]:
    """Render the kustomization in ``folder`` to a list of Kubernetes objects."""
    return _render(Path(folder).resolve(), stack=())


def _render(folder: Path, stack: tuple[Path, ...]) -> list[dict[str, Any]]:
    if folder in stack:
        raise MongarsError(f"{folder}: kustomization cycle through {' -> '.join(map(str, stack))}")
    kustomization_path = find_kustomization(folder)
    documents = _load_yaml_documents(kustomization_path)
    if len(documents) != 1:
        raise MongarsError(f"{kustomization_path}: expected exactly one YAML document")
    spec = documents[0]
    unsupported = sorted(set(spec) - SUPPORTED_FIELDS)
    if unsupported:
        raise MongarsError(
            f"{kustomization_path}: unsupported field(s) {', '.join(unsupported)}; this offline "
            f"renderer handles {', '.join(sorted(SUPPORTED_FIELDS))} "
            "(kubectl kustomize does the rest)"
        )
    if spec.get("kind", "Kustomization") != "Kustomization":
        raise MongarsError(f"{kustomization_path}: kind must be Kustomization")

    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources") or []:
        target = (folder / str(entry)).resolve()
        if target.is_dir():
            objects.extend(_render(target, (*stack, folder)))
        else:
            objects.extend(copy.deepcopy(_load_yaml_documents(target)))
    _check_unique(objects, kustomization_path)

    # kustomize's builtin order: patches, then namespace, then labels and annotations.
    for patch in spec.get("patches") or []:
        objects = _apply_patch(objects, patch, folder, kustomization_path)
    if spec.get("namespace"):
        for obj in objects:
            _set_namespace(obj, str(spec["namespace"]))
    for label_spec in spec.get("labels") or []:
        if label_spec.get("includeSelectors") or label_spec.get("includeTemplates"):
            raise MongarsError(
                f"{kustomization_path}: labels with includeSelectors/includeTemplates are not "
                "supported offline; keep them false"
            )
        for obj in objects:
            _metadata(obj).setdefault("labels", {}).update(label_spec.get("pairs") or {})
    for obj in objects:
        if spec.get("commonAnnotations"):
            _metadata(obj).setdefault("annotations", {}).update(spec["commonAnnotations"])
    _check_unique(objects, kustomization_path)
    return objects


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.setdefault("metadata", {})


def _check_unique(objects: Iterable[dict[str, Any]], where: Path) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for obj in objects:
        key = resource_id(obj)
        if key in seen:
            raise MongarsError(f"{where}: resource {key[1]}/{key[3]} is defined twice")
        seen.add(key)


def _set_namespace(obj: dict[str, Any], namespace: str) -> None:
    kind = obj.get("kind")
    if kind == "Namespace":
        if obj.get("apiVersion") == "v1":
            _metadata(obj)["name"] = namespace
        return
    if kind in CLUSTER_SCOPED_KINDS:
        return
    _metadata(obj)["namespace"] = namespace
    if kind in ("RoleBinding", "ClusterRoleBinding"):
        # kustomize's default "defaultOnly" mode: only subjects named "default" are rewritten.
        for subject in obj.get("subjects") or []:
            if subject.get("name") == "default":
                subject["namespace"] = namespace


# --- patches -------------------------------------------------------------------------------


def _apply_patch(
    objects: list[dict[str, Any]], entry: dict[str, Any], folder: Path, where: Path
) -> list[dict[str, Any]]:
    if not isinstance(entry, dict) or ("path" in entry) == ("patch" in entry):
        raise MongarsError(f"{where}: each patch needs exactly one of path or patch")
    unknown = set(entry) - {"path", "patch", "target"}
    if unknown:
        raise MongarsError(f"{where}: patch field(s) {', '.join(sorted(unknown))} not supported")
    if "path" in entry:
        body = yaml.safe_load((folder / entry["path"]).read_text(encoding="utf-8"))
    else:
        body = yaml.safe_load(entry["patch"])
    target = entry.get("target")
    if isinstance(body, list):
        if not target:
            raise MongarsError(f"{where}: a JSON 6902 patch needs a target")
        matched = [obj for obj in objects if _matches(obj, target)]
        if not matched:
            raise MongarsError(f"{where}: patch target {target} matches no resource")
        for obj in matched:
            _json6902(obj, body, where)
        return objects
    if not isinstance(body, dict):
        raise MongarsError(f"{where}: a patch must be a mapping (strategic merge) or a list (6902)")
    if target:
        matched = [obj for obj in objects if _matches(obj, target)]
    else:
        matched = [obj for obj in objects if _same_resource(obj, body)]
    if not matched:
        raise MongarsError(
            f"{where}: patch for {body.get('kind')}/{(body.get('metadata') or {}).get('name')} "
            "matches no resource"
        )
    result = []
    for obj in objects:
        if not any(obj is m for m in matched):
            result.append(obj)
        elif body.get("$patch") == "delete":
            continue
        else:
            patch = {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}
            if target:
                patch.get("metadata", {}).pop("name", None)
            result.append(_strategic_merge(obj, patch, where))
    return result


def _same_resource(obj: dict[str, Any], patch: dict[str, Any]) -> bool:
    group, kind, namespace, name = resource_id(patch)
    obj_group, obj_kind, obj_namespace, obj_name = resource_id(obj)
    return (group, kind, name) == (obj_group, obj_kind, obj_name) and (
        not namespace or namespace == obj_namespace
    )


def _matches(obj: dict[str, Any], target: dict[str, Any]) -> bool:
    group, kind, namespace, name = resource_id(obj)
    version = str(obj.get("apiVersion", "")).split("/")[-1]
    checks = {
        "group": group,
        "version": version,
        "kind": kind,
        "name": name,
        "namespace": namespace,
    }
    unknown = set(target) - set(checks)
    if unknown:
        raise MongarsError(f"patch target field(s) {', '.join(sorted(unknown))} not supported")
    return all(str(target[key]) == checks[key] for key in target)


def _strategic_merge(base: Any, patch: Any, where: Path) -> Any:
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(key, str) and key.startswith("$"):
            raise MongarsError(f"{where}: strategic-merge directive {key} not supported offline")
        if value is None:
            merged.pop(key, None)
        elif key in _MERGE_KEYS and isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = _merge_list(merged[key], value, _MERGE_KEYS[key], where)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _strategic_merge(merged[key], value, where)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _merge_list(base: list[Any], patch: list[Any], key: str, where: Path) -> list[Any]:
    result = [copy.deepcopy(item) for item in base]
    for item in patch:
        index = next(
            (
                i
                for i, old in enumerate(result)
                if isinstance(old, dict) and old.get(key) == item.get(key)
            ),
            None,
        )
        if index is None:
            result.append(copy.deepcopy(item))
        else:
            result[index] = _strategic_merge(result[index], item, where)
    return result


def _json6902(obj: dict[str, Any], operations: list[Any], where: Path) -> None:
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise MongarsError(f"{where}: each JSON 6902 operation needs op and path")
        op, tokens = operation["op"], _pointer(operation["path"], where)
        parent, last = _walk(obj, tokens[:-1], where, operation["path"]), tokens[-1]
        if op in ("add", "replace"):
            value = copy.deepcopy(operation.get("value"))
            if isinstance(parent, list):
                if last == "-" and op == "add":
                    parent.append(value)
                    continue
                index = _index(last, parent, where, operation["path"], allow_end=op == "add")
                if op == "add":
                    parent.insert(index, value)
                else:
                    parent[index] = value
            else:
                if op == "replace" and last not in parent:
                    raise MongarsError(f"{where}: replace {operation['path']}: no such field")
                parent[last] = value
        elif op == "remove":
            if isinstance(parent, list):
                parent.pop(_index(last, parent, where, operation["path"]))
            elif last in parent:
                del parent[last]
            else:
                raise MongarsError(f"{where}: remove {operation['path']}: no such field")
        elif op == "test":
            current = _walk(obj, tokens, where, operation["path"])
            if current != operation.get("value"):
                raise MongarsError(f"{where}: test {operation['path']} failed")
        else:
            raise MongarsError(
                f"{where}: JSON 6902 op {op!r} not supported; use add/replace/remove/test"
            )


def _pointer(path: str, where: Path) -> list[str]:
    if not path.startswith("/"):
        raise MongarsError(f"{where}: JSON pointer {path!r} must start with /")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _walk(node: Any, tokens: list[str], where: Path, path: str) -> Any:
    for token in tokens:
        if isinstance(node, list):
            node = node[_index(token, node, where, path)]
        elif isinstance(node, dict) and token in node:
            node = node[token]
        else:
            raise MongarsError(f"{where}: path {path} does not exist in the target resource")
    return node


def _index(token: str, items: list[Any], where: Path, path: str, *, allow_end: bool = False) -> int:
    limit = len(items) + (1 if allow_end else 0)
    if not token.isdigit() or int(token) >= limit:
        raise MongarsError(f"{where}: path {path}: index {token} out of range")
    return int(token)
