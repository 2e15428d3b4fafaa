"""Pins of the images: pyproject.toml is the source of truth, cuda-train.txt only overrides it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
CUDA_PINS = REPO / "requirements" / "cuda-train.txt"

# What Unsloth 2026.10.9 / unsloth_zoo 2026.10.9 and trl 1.15.0 declare (their wheel metadata).
UNSLOTH_REQUIRES = {
    "transformers": SpecifierSet(
        ">=4.52.4,<=5.17.0,!=4.53.0,!=4.54.0,!=4.55.0,!=4.55.1,!=4.57.0,!=4.57.4,!=4.57.5,!=5.0.0,!=5.1.0"
    ),
    "trl": SpecifierSet(">=0.18.2,<=1.15.0,!=0.19.0"),
    "datasets": SpecifierSet(">=3.4.1,<5.0.0,!=4.0.*,!=4.1.0,!=4.4.*,!=4.5.0"),
    "torch": SpecifierSet(">=2.4.0,<2.15.0"),
    "peft": SpecifierSet(">=0.18.0,!=0.11.0"),
    "bitsandbytes": SpecifierSet(">=0.45.5,!=0.46.0,!=0.48.0"),
}
TRL_1_15_REQUIRES = {"datasets": SpecifierSet(">=4.7.0"), "accelerate": SpecifierSet(">=1.4.0")}


def _load_deps_module():
    spec = importlib.util.spec_from_file_location(
        "pyproject_deps", REPO / "images" / "pyproject_deps.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


deps = _load_deps_module()


def _pins(lines: list[str]) -> dict[str, Version]:
    pins = {}
    for line in lines:
        requirement = Requirement(line)
        (specifier,) = list(requirement.specifier)
        assert specifier.operator == "==", f"{line}: images pin exactly"
        pins[deps.canonical_name(requirement.name)] = Version(specifier.version)
    return pins


def _pyproject_pins() -> dict[str, Version]:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return _pins(tomllib.load(handle)["project"]["dependencies"])


def test_cuda_pins_are_exact_and_satisfy_unsloth_and_trl() -> None:
    cuda = _pins(deps.requirement_lines(CUDA_PINS))
    for name in ("unsloth", "unsloth-zoo", "transformers", "trl", "datasets", "torch"):
        assert name in cuda, f"{name} must be pinned for the training image"
    project = _pyproject_pins()
    effective = {**project, **cuda}  # what the image ends up with
    for name, allowed in {**UNSLOTH_REQUIRES, **TRL_1_15_REQUIRES}.items():
        assert effective[name] in allowed, f"{name}=={effective[name]} breaks {allowed}"


def test_cuda_file_only_overrides_what_differs() -> None:
    """A name pinned in both files must differ, or the copy in cuda-train.txt is redundant."""
    cuda = _pins(deps.requirement_lines(CUDA_PINS))
    project = _pyproject_pins()
    for name in set(cuda) & set(project):
        if name == "torch":
            continue  # same version; listed so the CUDA build is chosen with torchvision/xformers
        assert cuda[name] != project[name], f"{name}: same pin as pyproject.toml; remove it here"


def test_remaining_dependencies_keep_pyproject_pins_verbatim() -> None:
    cuda_names = {deps.canonical_name(line) for line in deps.requirement_lines(CUDA_PINS)}
    rest = deps.remaining_dependencies(REPO / "pyproject.toml", cuda_names | {"llama-cpp-python"})
    names = {deps.canonical_name(line) for line in rest}
    assert not names & cuda_names
    assert "llama-cpp-python" not in names
    assert {"kfp", "peft", "accelerate", "bitsandbytes"} <= names
    with (REPO / "pyproject.toml").open("rb") as handle:
        everything = tomllib.load(handle)["project"]["dependencies"]
    assert all(line in everything for line in rest)


def test_deps_script_command_line_matches_the_dockerfile_call() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "images/pyproject_deps.py",
            "pyproject.toml",
            "--exclude-from",
            "requirements/cuda-train.txt",
            "--exclude",
            "llama-cpp-python",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    printed = result.stdout.split()
    assert printed and not any(
        p.startswith(("transformers", "trl==", "llama-cpp")) for p in printed
    )
    for line in printed:
        Requirement(line)  # every line is a valid requirement pip can read


def test_canonical_names_follow_pep_503() -> None:
    assert deps.canonical_name("Unsloth_Zoo==1") == "unsloth-zoo"
    assert deps.canonical_name("llama.cpp.python[server]>=1") == "llama-cpp-python"
