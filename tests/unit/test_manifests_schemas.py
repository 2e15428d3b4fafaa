"""manifests/: valid against the Kubernetes schemas (offline), least RBAC, no secret values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kustomize_render import render

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
KUSTOMIZATIONS = {"base": MANIFESTS / "base", "example": MANIFESTS / "overlays" / "example"}
# Oldest and newest Kubernetes minor versions the manifests must be valid for.
K8S_VERSIONS = ("1.30.0", "1.37.0")
HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")


def _validate(obj: dict[str, Any], version: str) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(obj, version, strict=True)


def _all_yaml_documents() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                found.append((path, document))
    return found


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_rendered_objects_are_valid_kubernetes(name: str, version: str) -> None:
    objects = render(KUSTOMIZATIONS[name])
    assert {o["kind"] for o in objects} == {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "PersistentVolumeClaim",
    }
    for obj in objects:
        _validate(obj, version)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_plain_manifest_file_is_valid_kubernetes(version: str) -> None:
    checked = 0
    for path, document in _all_yaml_documents():
        if document.get("kind") == "Kustomization":
            continue
        if path.parent.name == "example" and path.name != "kustomization.yaml":
            continue  # patches: partial objects by design, validated after rendering
        _validate(document, version)
        checked += 1
    assert checked >= 6


def test_schema_validation_rejects_a_broken_object() -> None:
    import kubernetes_validate

    broken = yaml.safe_load((KUSTOMIZATIONS["base"] / "model-cache-pvc.yaml").read_text())
    broken["spec"]["accesMode"] = ["ReadWriteMany"]  # typo: unknown field
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(broken, K8S_VERSIONS[-1])


def test_overlay_moves_everything_to_its_namespace_consistently() -> None:
    objects = render(KUSTOMIZATIONS["example"])
    by_kind = {o["kind"]: o for o in objects}
    assert by_kind["Namespace"]["metadata"]["name"] == "team-ml"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "team-ml", obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "mongars"
    binding = by_kind["RoleBinding"]
    (subject,) = binding["subjects"]
    assert subject == {
        "kind": "ServiceAccount",
        "name": by_kind["ServiceAccount"]["metadata"]["name"],
        "namespace": "team-ml",
    }
    assert binding["roleRef"]["name"] == by_kind["Role"]["metadata"]["name"]
    pvc = by_kind["PersistentVolumeClaim"]["spec"]
    assert pvc["storageClassName"] == "standard-rwx"
    assert pvc["resources"]["requests"]["storage"] == "1Ti"
    assert pvc["accessModes"] == ["ReadWriteMany"]
    annotations = by_kind["ServiceAccount"]["metadata"]["annotations"]
    assert annotations["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")


def test_base_binding_subject_matches_its_own_namespace() -> None:
    objects = render(KUSTOMIZATIONS["base"])
    binding = next(o for o in objects if o["kind"] == "RoleBinding")
    assert binding["subjects"][0]["namespace"] == binding["metadata"]["namespace"] == "mongars"


def test_model_cache_pvc_name_is_the_pipeline_default() -> None:
    compiled = REPO / "pipelines" / "mongars.yaml"
    assert compiled.is_file(), "pipelines/mongars.yaml is committed: run `make compile`"
    spec = next(yaml.safe_load_all(compiled.read_text(encoding="utf-8")))
    default = spec["root"]["inputDefinitions"]["parameters"]["model_cache_pvc"].get("defaultValue")
    names = {
        o["metadata"]["name"]
        for o in render(KUSTOMIZATIONS["base"])
        if o["kind"] == "PersistentVolumeClaim"
    }
    # The pipeline defaults to the shared model cache; an empty default would pass vacuously.
    assert default == "mongars-model-cache" and default in names, (default, names)


def test_rbac_is_namespaced_and_least_privilege() -> None:
    role = next(o for o in render(KUSTOMIZATIONS["base"]) if o["kind"] == "Role")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert not set(rule["verbs"]) & {"create", "update", "delete", "deletecollection"} or rule[
            "apiGroups"
        ] == ["argoproj.io"]
        if "secrets" in rule["resources"] or "configmaps" in rule["resources"]:
            assert rule.get("resourceNames"), "secret/configmap access must name the objects"
    hf_token_rules = [r for r in role["rules"] if "hf-token" in r.get("resourceNames", [])]
    assert not hf_token_rules, "pods get the HF token as env from the kubelet, not by reading it"
    assert not any(o["kind"].startswith("Cluster") for o in render(KUSTOMIZATIONS["example"]))


def test_no_secret_value_is_committed() -> None:
    secrets = [(p, d) for p, d in _all_yaml_documents() if d.get("kind") == "Secret"]
    assert secrets, "the HF token Secret template should be in manifests/templates"
    for path, secret in secrets:
        values = {**(secret.get("data") or {}), **(secret.get("stringData") or {})}
        assert all(value in ("", None) for value in values.values()), f"{path} commits a value"
    for folder in KUSTOMIZATIONS.values():
        assert all(o["kind"] != "Secret" for o in render(folder)), "apply -k must never touch it"
    for path in [
        *MANIFESTS.rglob("*"),
        REPO / "docs" / "cluster.md",
        *(REPO / "images").rglob("*"),
    ]:
        if path.is_file():
            assert not HF_TOKEN.search(path.read_text(encoding="utf-8", errors="replace")), path
