"""The offline kustomize renderer: kustomize's semantics for what it supports, refusal otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kustomize_render import render

from monGARS.mlops.errors import MongarsError

CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "cfg"},
    "data": {"a": "1", "b": "2"},
}
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
                    {"name": "side", "image": "side:1"},
                ]
            }
        }
    },
}


def _write(folder: Path, kustomization: dict, **files: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    for name, content in files.items():
        text = (
            content
            if isinstance(content, str)
            else yaml.safe_dump_all(content if isinstance(content, list) else [content])
        )
        (folder / name.replace("__", ".")).write_text(text)
    return folder


def test_namespace_labels_and_annotations(tmp_path: Path) -> None:
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "rb"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [
            {"kind": "ServiceAccount", "name": "default"},
            {"kind": "ServiceAccount", "name": "other", "namespace": "old"},
        ],
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "whatever"}}
    folder = _write(
        tmp_path / "k",
        {
            "namespace": "prod",
            "resources": ["all.yaml"],
            "labels": [{"pairs": {"team": "ml"}}],
            "commonAnnotations": {"owner": "me"},
        },
        all__yaml=[CONFIGMAP, binding, namespace],
    )
    cm, rb, ns = render(folder)
    assert cm["metadata"] == {
        "name": "cfg",
        "namespace": "prod",
        "labels": {"team": "ml"},
        "annotations": {"owner": "me"},
    }
    assert ns["metadata"]["name"] == "prod" and "namespace" not in ns["metadata"]
    # kustomize rewrites only subjects named "default"
    assert rb["subjects"][0]["namespace"] == "prod"
    assert rb["subjects"][1]["namespace"] == "old"


def test_strategic_merge_patch_merges_named_lists_and_deletes_nulls(tmp_path: Path) -> None:
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]},
                    ]
                }
            }
        },
    }
    cm_patch = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg"},
        "data": {"a": None},
    }
    base = _write(
        tmp_path / "base",
        {"resources": ["d.yaml", "c.yaml"]},
        d__yaml=DEPLOYMENT,
        c__yaml=CONFIGMAP,
    )
    overlay = _write(
        tmp_path / "overlay",
        {"resources": ["../base"], "patches": [{"path": "p.yaml"}, {"path": "q.yaml"}]},
        p__yaml=patch,
        q__yaml=cm_patch,
    )
    deployment, configmap = render(overlay)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "side"]
    assert containers[0]["image"] == "app:2"
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert configmap["data"] == {"b": "2"}
    assert render(base)[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "app:1"


def test_json6902_operations(tmp_path: Path) -> None:
    ops = yaml.safe_dump(
        [
            {"op": "replace", "path": "/data/a", "value": "x"},
            {"op": "add", "path": "/data/c~1d", "value": "3"},
            {"op": "remove", "path": "/data/b"},
            {"op": "test", "path": "/data/a", "value": "x"},
        ]
    )
    folder = _write(
        tmp_path / "k",
        {
            "resources": ["c.yaml"],
            "patches": [{"target": {"kind": "ConfigMap", "name": "cfg"}, "patch": ops}],
        },
        c__yaml=CONFIGMAP,
    )
    (configmap,) = render(folder)
    assert configmap["data"] == {"a": "x", "c/d": "3"}


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        ({"resources": ["c.yaml"], "images": [{"name": "x"}]}, "unsupported field"),
        ({"resources": ["c.yaml", "c.yaml"]}, "defined twice"),
        ({"resources": ["missing.yaml"]}, "not found"),
        (
            {
                "resources": ["c.yaml"],
                "patches": [{"target": {"kind": "Secret"}, "patch": "- {op: remove, path: /data}"}],
            },
            "matches no resource",
        ),
        (
            {
                "resources": ["c.yaml"],
                "patches": [
                    {
                        "target": {"kind": "ConfigMap"},
                        "patch": "- {op: replace, path: /data/zz, value: 1}",
                    }
                ],
            },
            "no such field",
        ),
        (
            {"resources": ["c.yaml"], "patches": [{"patch": "- {op: remove, path: /data}"}]},
            "needs a target",
        ),
        (
            {"resources": ["c.yaml"], "labels": [{"pairs": {"a": "b"}, "includeSelectors": True}]},
            "includeSelectors",
        ),
    ],
)
def test_unsupported_or_broken_kustomizations_are_refused(
    tmp_path: Path, kustomization: dict, message: str
) -> None:
    folder = _write(tmp_path / "k", kustomization, c__yaml=CONFIGMAP)
    with pytest.raises(MongarsError, match=message) as caught:
        render(folder)
    assert "\n" not in str(caught.value)


def test_folder_without_kustomization_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MongarsError, match=r"no kustomization\.yaml"):
        render(tmp_path)
