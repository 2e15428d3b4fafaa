"""Pins of the images: pyproject.toml is the source of truth, cuda-train.txt only overrides it.

The ``network`` tests resolve each image's whole requirement set (every dependency's own
requirements, not only the pins written here) with pip against the package index, so a conflict
such as transformers 5.17 (huggingface-hub<2) against huggingface-hub 2.4 fails here in seconds
rather than in a build.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
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
    """pyproject's pins as the CUDA image has them: the CPU stack and the ``cuda`` extra."""
    return _pins(deps.project_dependencies(REPO / "pyproject.toml", ("cuda",)))


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


def test_cuda_pins_satisfy_transformers_own_hub_requirement() -> None:
    """transformers 5.17.0 declares huggingface-hub>=1.5.0,<2.0 (its wheel metadata)."""
    cuda = _pins(deps.requirement_lines(CUDA_PINS))
    effective = {**_pyproject_pins(), **cuda}
    assert effective["transformers"] == Version("5.17.0")
    assert effective["huggingface-hub"] in SpecifierSet(">=1.5.0,<2.0")


def test_image_sets_are_what_the_dockerfiles_install() -> None:
    runtime = deps.image_requirements(REPO / "pyproject.toml", "runtime")
    cuda = deps.image_requirements(REPO / "pyproject.toml", "train-cuda")
    runtime_pins = _pins(runtime)
    assert runtime_pins["torch"].local == "cpu", "the CPU image pins the CPU build of torch"
    assert "bitsandbytes" not in runtime_pins and "llama-cpp-python" in runtime_pins
    cuda_pins = _pins(cuda)
    assert "llama-cpp-python" not in cuda_pins and cuda_pins["torch"].local is None
    assert "bitsandbytes" in cuda_pins, "the hf backend's 4-bit loading on CUDA needs it"
    assert len(cuda_pins) == len(cuda), "a name appears twice in the CUDA set"
    for image in ("runtime", "train-cuda"):
        dockerfile = (REPO / "images" / f"Dockerfile.{image}").read_text(encoding="utf-8")
        assert f"pyproject_deps.py /src/pyproject.toml --image {image}" in dockerfile


def _pip_cert_args() -> list[str]:
    """``--isolated`` drops pip's config and PIP_* variables, so pass a proxy CA explicitly."""
    for variable in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        path = os.environ.get(variable, "")
        if path and Path(path).is_file():
            return ["--cert", path]
    return []


@dataclass
class Resolution:
    """One pip resolution, started in the background; ``finish()`` waits for it."""

    process: subprocess.Popen[str]
    report: Path

    def finish(self) -> tuple[int, str]:
        _, stderr = self.process.communicate(timeout=600)
        return self.process.returncode, stderr

    def resolved(self) -> dict[str, Version]:
        report = json.loads(self.report.read_text(encoding="utf-8"))
        return {
            deps.canonical_name(item["metadata"]["name"]): Version(item["metadata"]["version"])
            for item in report["install"]
        }


def _start_resolution(requirements: list[str], folder: Path) -> Resolution:
    """pip's resolver on the whole set, against the public index only (no local wheels).

    For this interpreter's platform (CPython 3.11 on x86-64 Linux in CI, as in the images);
    llama-cpp-python's requirements come from its sdist's metadata, nothing is compiled.
    ``fast-deps`` reads each wheel's metadata by HTTP range requests where the index serves no
    PEP 658 metadata file (this machine's proxy does not): the resolution is the same, measured
    here (147 packages, identical report), without downloading the CUDA wheels whole; pip falls
    back to a whole download where the server refuses ranges.
    """
    folder.mkdir(parents=True)
    requirements_file = folder / "requirements.txt"
    requirements_file.write_text("\n".join(requirements) + "\n", encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "pip",
        "--isolated",  # this machine's pip config (local wheel folders, caps) plays no part
        "install",
        "--dry-run",
        "--ignore-installed",
        "--use-feature=fast-deps",
        "--quiet",
        "--report",
        str(folder / "report.json"),
        "--requirement",
        str(requirements_file),
        *_pip_cert_args(),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    return Resolution(process, folder / "report.json")


def _runtime_set() -> list[str]:
    """PyPI has no ``+cpu`` torch; its torch of the same version has the same requirements."""
    return [
        line.replace("+cpu", "")
        for line in deps.image_requirements(REPO / "pyproject.toml", "runtime")
    ]


def _conflicting_set() -> list[str]:
    """The conflict the images once had: nothing pins huggingface-hub<2 but transformers itself."""
    return [
        "huggingface-hub==2.4.0" if deps.canonical_name(line) == "huggingface-hub" else line
        for line in deps.image_requirements(REPO / "pyproject.toml", "train-cuda")
    ]


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Resolution]]:
    """The three resolutions, run side by side: each mostly waits on the index."""
    folder = tmp_path_factory.mktemp("resolutions")
    sets = {
        "train-cuda": deps.image_requirements(REPO / "pyproject.toml", "train-cuda"),
        "runtime": _runtime_set(),
        "conflict": _conflicting_set(),
    }
    started = {name: _start_resolution(lines, folder / name) for name, lines in sets.items()}
    yield started
    for resolution in started.values():
        if resolution.process.poll() is None:
            resolution.process.kill()
            resolution.process.wait()


@pytest.mark.network
def test_cuda_image_set_resolves_against_the_index(resolutions: dict[str, Resolution]) -> None:
    requirements = deps.image_requirements(REPO / "pyproject.toml", "train-cuda")
    returncode, stderr = resolutions["train-cuda"].finish()
    assert returncode == 0, stderr[-3000:]
    resolved = resolutions["train-cuda"].resolved()
    for name, version in _pins(requirements).items():
        assert resolved[name] == version, f"{name}: pinned {version}, resolved {resolved[name]}"
    assert resolved["huggingface-hub"] < Version("2")
    assert any(name.startswith("nvidia-") for name in resolved), "torch must be the CUDA build"


@pytest.mark.network
def test_runtime_image_set_resolves_against_the_index(resolutions: dict[str, Resolution]) -> None:
    returncode, stderr = resolutions["runtime"].finish()
    assert returncode == 0, stderr[-3000:]
    resolved = resolutions["runtime"].resolved()
    for name, version in _pins(_runtime_set()).items():
        assert resolved[name] == version, f"{name}: pinned {version}, resolved {resolved[name]}"
    assert "bitsandbytes" not in resolved


@pytest.mark.network
def test_resolution_catches_a_conflict_no_pin_shows(resolutions: dict[str, Resolution]) -> None:
    returncode, stderr = resolutions["conflict"].finish()
    assert returncode != 0
    assert "ResolutionImpossible" in stderr or "conflict" in stderr


def test_remaining_dependencies_keep_pyproject_pins_verbatim() -> None:
    cuda_names = {deps.canonical_name(line) for line in deps.requirement_lines(CUDA_PINS)}
    rest = deps.remaining_dependencies(REPO / "pyproject.toml", cuda_names | {"llama-cpp-python"})
    names = {deps.canonical_name(line) for line in rest}
    assert not names & cuda_names
    assert "llama-cpp-python" not in names
    assert {"kfp", "peft", "accelerate"} <= names
    with (REPO / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    assert all(line in project["dependencies"] for line in rest)
    with_cuda = deps.remaining_dependencies(
        REPO / "pyproject.toml", cuda_names | {"llama-cpp-python"}, ("cuda",)
    )
    assert with_cuda[: len(rest)] == rest
    assert with_cuda[len(rest) :] == project["optional-dependencies"]["cuda"]


def test_the_cpu_stack_leaves_bitsandbytes_to_the_cuda_extra() -> None:
    """peft imports bitsandbytes whenever it is installed (1.2 s per task, a kernels warning on
    CPU), and nothing on CPU uses it: only the ``cuda`` extra, which the CUDA image installs."""
    with (REPO / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    names = {deps.canonical_name(line) for line in project["dependencies"]}
    assert "bitsandbytes" not in names
    assert [deps.canonical_name(line) for line in project["optional-dependencies"]["cuda"]] == [
        "bitsandbytes"
    ]
    with pytest.raises(ValueError, match="no extra 'gpu'"):
        deps.project_dependencies(REPO / "pyproject.toml", ("gpu",))


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
