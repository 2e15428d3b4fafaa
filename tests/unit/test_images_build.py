"""images/build.sh and images/images.mk build exactly the images the pipeline YAML names."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPILED = REPO / "pipelines" / "mongars.yaml"


def _plan(*extra: str, env: dict[str, str] | None = None) -> list[list[str]]:
    result = subprocess.run(
        ["bash", str(REPO / "images" / "build.sh"), "--dry-run", *extra],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable, **(env or {})},
    )
    return [shlex.split(line) for line in result.stdout.splitlines() if line.strip()]


def _built_tags(plan: list[list[str]]) -> dict[str, str]:
    """Tag -> Dockerfile for every docker build in a plan."""
    built = {}
    for command in plan:
        if command[1] == "build":
            built[command[command.index("--tag") + 1]] = command[command.index("--file") + 1]
    return built


def _all_images(env: dict[str, str] | None = None) -> dict[str, str]:
    code = "import json, monGARS.components.images as i; print(json.dumps(i.ALL_IMAGES))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    ).stdout
    return yaml.safe_load(out)


def test_build_script_builds_every_image_with_its_dockerfile() -> None:
    plan = _plan()
    built = _built_tags(plan)
    assert set(built) == set(_all_images().values())
    for tag, dockerfile in built.items():
        assert (REPO / dockerfile).is_file(), dockerfile
        name = tag.rsplit("/", 1)[-1].split(":")[0]
        assert dockerfile.endswith(
            {"mongars-runtime": "runtime", "mongars-train-cuda": "train-cuda"}[name]
        )
    assert not any(command[1] == "push" for command in plan), "push only with --push"


def test_build_args_carry_the_package_version() -> None:
    from monGARS.components.images import package_version

    for command in _plan():
        if command[1] == "build":
            assert f"VERSION={package_version()}" in command
            assert command[-1] == "."  # the repository root is the build context


def test_registry_and_tag_overrides_reach_build_and_push() -> None:
    env = {"MONGARS_IMAGE_REGISTRY": "registry.example.com/ml/", "MONGARS_IMAGE_TAG": "abc123"}
    plan = _plan("--push", env=env)
    built = _built_tags(plan)
    assert set(built) == {
        "registry.example.com/ml/mongars-runtime:abc123",
        "registry.example.com/ml/mongars-train-cuda:abc123",
    }
    assert set(built) == set(_all_images(env).values())
    pushed = {command[2] for command in plan if command[1] == "push"}
    assert pushed == set(built)


def test_make_fragment_passes_overrides_to_the_script() -> None:
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-f",
            "images/images.mk",
            "images-plan",
            "MONGARS_IMAGE_REGISTRY=reg.local:5000/team",
            "MONGARS_IMAGE_TAG=t1",
            f"IMAGES_PYTHON={sys.executable}",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert "--tag reg.local:5000/team/mongars-runtime:t1" in result.stdout
    assert "docker push reg.local:5000/team/mongars-train-cuda:t1" in result.stdout


def test_build_script_refuses_unknown_arguments() -> None:
    result = subprocess.run(
        ["bash", str(REPO / "images" / "build.sh"), "--frobnicate"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert "unknown argument --frobnicate" in result.stderr


def test_compiled_pipeline_names_only_images_that_make_images_builds() -> None:
    assert COMPILED.is_file(), "pipelines/mongars.yaml is committed: run `make compile`"
    spec = next(yaml.safe_load_all(COMPILED.read_text(encoding="utf-8")))
    named = {
        executor["container"]["image"]
        for executor in spec["deploymentSpec"]["executors"].values()
        if "container" in executor
    }
    built = set(_built_tags(_plan()))
    assert named, "the compiled pipeline names no image"
    assert named <= built, f"images the YAML names but make images does not build: {named - built}"


def test_one_image_with_a_base_image_and_the_torch_index() -> None:
    from monGARS.components.images import CPU_IMAGE

    plan = _plan(
        "--image",
        "mongars-runtime",
        "--base-image",
        "registry.example.com/py:3.11",
        "--torch-index",
        "https://mirror.example.com/torch-cpu",
    )
    (command,) = plan
    assert command[command.index("--tag") + 1] == CPU_IMAGE
    assert "BASE_IMAGE=registry.example.com/py:3.11" in command
    assert "TORCH_INDEX_URL=https://mirror.example.com/torch-cpu" in command


def test_unknown_image_is_refused_with_the_known_names() -> None:
    result = subprocess.run(
        ["bash", str(REPO / "images" / "build.sh"), "--dry-run", "--image", "mongars-gpu"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert result.returncode == 2
    assert "--image mongars-gpu" in result.stderr and "mongars-runtime" in result.stderr


def test_dockerd_helper_stops_only_a_daemon_it_started(tmp_path: Path) -> None:
    """Without its marker file, `stop` touches nothing: a daemon someone else runs stays up."""
    state = tmp_path / "docker-state"
    state.mkdir()
    (state / "keep").write_text("x")
    result = subprocess.run(
        ["bash", str(REPO / "images" / "dockerd.sh"), "stop", str(state)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "did not start" in result.stdout
    assert (state / "keep").is_file()
    usage = subprocess.run(
        ["bash", str(REPO / "images" / "dockerd.sh"), "restart", str(state)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert usage.returncode == 2 and "usage" in usage.stderr


@pytest.mark.parametrize("script", ["build.sh", "base.sh", "dockerd.sh"])
def test_shell_scripts_parse(script: str) -> None:
    result = subprocess.run(
        ["bash", "-n", str(REPO / "images" / script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
