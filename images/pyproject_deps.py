"""Print the full set of pinned requirements an image installs, from pyproject.toml.

pyproject.toml is the one source of truth for the CPU stack; each image's set derives from it here,
and the Dockerfiles install exactly what this prints (one pip resolution per image):

- ``--image runtime`` (the CPU image): pyproject's pins, with torch's pin turned into the PyTorch
  CPU build (``torch==X`` -> ``torch==X+cpu``: a PyPI ``torch`` wheel for Linux is the CUDA build,
  with GBs of nvidia-* wheels); bitsandbytes (4-bit CUDA training only) is not among them;
- ``--image train-cuda``: ``requirements/cuda-train.txt`` (Unsloth's transformers/trl/datasets
  and what they need, the CUDA torch stack), then pyproject's other pins and its ``cuda`` extra
  (bitsandbytes), without the names that file overrides and without llama-cpp-python (export runs
  in the CPU image).

tests/unit/test_images_pins.py resolves both sets against the package index. Standard library
only: it runs before anything is installed.

Usage: python images/pyproject_deps.py pyproject.toml --image runtime
       python images/pyproject_deps.py pyproject.toml --image train-cuda
       python images/pyproject_deps.py pyproject.toml --exclude-from FILE --exclude NAME
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical_name(requirement: str) -> str:
    """PEP 503 normalised project name of a requirement line (``Foo_Bar[x]>=1`` -> ``foo-bar``)."""
    match = _NAME.match(requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirement_lines(path: Path) -> list[str]:
    """Requirement lines of a requirements file: comments, blanks and pip options dropped."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def project_dependencies(pyproject: Path, extras: tuple[str, ...] = ()) -> list[str]:
    """The project's dependencies, then those of each extra in ``extras``."""
    with pyproject.open("rb") as handle:
        project = tomllib.load(handle)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise ValueError(f"pyproject.toml has no extra {unknown[0]!r}: one of {sorted(optional)}")
    return list(project["dependencies"]) + [dep for extra in extras for dep in optional[extra]]


def remaining_dependencies(
    pyproject: Path, excluded: set[str], extras: tuple[str, ...] = ()
) -> list[str]:
    """The project's dependencies (and ``extras``') whose names are not in ``excluded``
    (canonical names)."""
    return [
        dep
        for dep in project_dependencies(pyproject, extras)
        if canonical_name(dep) not in excluded
    ]


def cpu_torch(requirement: str) -> str:
    """``torch==2.13.0`` -> ``torch==2.13.0+cpu``; any other requirement unchanged."""
    if canonical_name(requirement) != "torch":
        return requirement
    match = re.fullmatch(r"\s*torch\s*==\s*([0-9][0-9A-Za-z.]*)\s*", requirement)
    if match is None:
        raise ValueError(f"--cpu-torch needs an exact pin (torch==X.Y.Z), got {requirement!r}")
    return f"torch=={match.group(1)}+cpu"


# What each image leaves out of pyproject's pins, and which of its extras it adds to them.
IMAGE_EXCLUDES: dict[str, tuple[str, ...]] = {"runtime": (), "train-cuda": ("llama-cpp-python",)}
IMAGE_EXTRAS: dict[str, tuple[str, ...]] = {"runtime": (), "train-cuda": ("cuda",)}
CUDA_PINS = Path("requirements") / "cuda-train.txt"


def image_requirements(pyproject: Path, image: str) -> list[str]:
    """Every requirement ``image`` installs, in the order the Dockerfile passes them to pip."""
    if image not in IMAGE_EXCLUDES:
        raise ValueError(f"--image {image!r}: use one of {', '.join(sorted(IMAGE_EXCLUDES))}")
    excluded = {canonical_name(name) for name in IMAGE_EXCLUDES[image]}
    extras = IMAGE_EXTRAS[image]
    if image == "runtime":
        return [cpu_torch(dep) for dep in remaining_dependencies(pyproject, excluded, extras)]
    overrides = requirement_lines(pyproject.parent / CUDA_PINS)
    excluded.update(canonical_name(line) for line in overrides)
    return overrides + remaining_dependencies(pyproject, excluded, extras)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    parser.add_argument(
        "--exclude-from",
        type=Path,
        action="append",
        default=[],
        help="requirements file whose package names are left out (repeatable)",
    )
    parser.add_argument(
        "--exclude", action="append", default=[], help="package name to leave out (repeatable)"
    )
    parser.add_argument(
        "--cpu-torch", action="store_true", help="pin the CPU build of torch (torch==X+cpu)"
    )
    parser.add_argument(
        "--image",
        choices=sorted(IMAGE_EXCLUDES),
        help="print that image's whole requirement set (other options are then ignored)",
    )
    args = parser.parse_args(argv)
    if args.image:
        print("\n".join(image_requirements(args.pyproject, args.image)))
        return 0
    excluded = {canonical_name(name) for name in args.exclude}
    for path in args.exclude_from:
        excluded.update(canonical_name(line) for line in requirement_lines(path))
    for dependency in remaining_dependencies(args.pyproject, excluded):
        print(cpu_torch(dependency) if args.cpu_torch else dependency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
