"""monGARS: a French-speaking, code-aware assistant. This distribution holds its MLOps pipeline.

The KFP components and the pipeline definition keep their folders at the repository root
(``components/``, ``pipelines/``) and install as ``monGARS.components`` and ``monGARS.pipelines``
(pyproject.toml maps them). When this package is imported from a source checkout (PYTHONPATH, or a
plain ``python`` in the repository root), the finder below gives those folders the same names, so
the code reads the same everywhere. In an installed wheel they are ordinary subpackages and no
finder is registered.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from importlib.util import spec_from_file_location
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parent.parent
ROOT_PACKAGES = ("components", "pipelines")
"""Repository-root folders that are subpackages of ``monGARS`` (pyproject.toml's package-dir)."""


class _RootPackageFinder(MetaPathFinder):
    """Finds ``monGARS.components`` and ``monGARS.pipelines`` in the checkout's root folders."""

    def __init__(self, root: Path) -> None:
        self.folders = {f"{__name__}.{name}": root / name for name in ROOT_PACKAGES}

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> ModuleSpec | None:
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        return spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


def _in_source_checkout() -> bool:
    return (_SOURCE_ROOT / "pyproject.toml").is_file() and all(
        (_SOURCE_ROOT / name / "__init__.py").is_file() for name in ROOT_PACKAGES
    )


if _in_source_checkout() and not any(isinstance(f, _RootPackageFinder) for f in sys.meta_path):
    # First in line: an editable install of another checkout may also claim these names.
    sys.meta_path.insert(0, _RootPackageFinder(_SOURCE_ROOT))
