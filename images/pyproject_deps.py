"""Print the project's pinned dependencies (pyproject.toml) minus those an image overrides.

pyproject.toml is the one source of truth for the CPU stack. The CUDA training image needs a
different transformers/trl/datasets (Unsloth's pins) and no llama-cpp-python, so its Dockerfile
installs ``requirements/cuda-train.txt`` first and then the rest of the project's pins, printed
here with the overridden names left out. Standard library only: it runs before anything is
installed.

Usage: python images/pyproject_deps.py pyproject.toml --exclude-from requirements/cuda-train.txt
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


def project_dependencies(pyproject: Path) -> list[str]:
    with pyproject.open("rb") as handle:
        return list(tomllib.load(handle)["project"]["dependencies"])


def remaining_dependencies(pyproject: Path, excluded: set[str]) -> list[str]:
    """The project's dependencies whose names are not in ``excluded`` (canonical names)."""
    return [dep for dep in project_dependencies(pyproject) if canonical_name(dep) not in excluded]


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
    args = parser.parse_args(argv)
    excluded = {canonical_name(name) for name in args.exclude}
    for path in args.exclude_from:
        excluded.update(canonical_name(line) for line in requirement_lines(path))
    for dependency in remaining_dependencies(args.pyproject, excluded):
        print(dependency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
