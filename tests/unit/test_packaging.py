"""The wheel: everything under the monGARS namespace, no package of the tree left out.

The KFP components and the pipeline definition keep their folders at the repository root and
install as ``monGARS.components`` and ``monGARS.pipelines`` (pyproject.toml's package-dir); in a
checkout, ``monGARS/__init__.py`` gives them the same names.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import monGARS

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# Where each listed package's files come from: package-dir, else the dotted path.
PACKAGE_DIRS = {
    package: SETUPTOOLS.get("package-dir", {}).get(package, package.replace(".", "/"))
    for package in SETUPTOOLS["packages"]
}
SOURCE_FOLDERS = ("monGARS", *monGARS.ROOT_PACKAGES)
# package-data folders: files, not packages.
_DATA_FOLDERS = ("monGARS/mlops/data",)


def _source_packages() -> set[str]:
    """Every folder of the tree that holds Python modules, relative to the repository."""
    folders = set()
    for top in SOURCE_FOLDERS:
        for path in (REPO / top).rglob("*.py"):
            folder = path.parent.relative_to(REPO).as_posix()
            if "__pycache__" not in folder and not folder.startswith(_DATA_FOLDERS):
                folders.add(folder)
    return folders


def test_every_package_of_the_tree_is_listed_in_pyproject() -> None:
    listed = set(PACKAGE_DIRS.values())
    missing = sorted(_source_packages() - listed)
    assert not missing, f"add these folders to [tool.setuptools] packages in pyproject: {missing}"
    absent = sorted(p for p, d in PACKAGE_DIRS.items() if not (REPO / d / "__init__.py").is_file())
    assert not absent, f"pyproject lists packages with no __init__.py: {absent}"


def test_root_folders_install_under_the_namespace() -> None:
    assert all(package.split(".")[0] == "monGARS" for package in PACKAGE_DIRS)
    assert {f"monGARS.{name}": name for name in monGARS.ROOT_PACKAGES} == SETUPTOOLS["package-dir"]


def test_checkout_gives_root_folders_their_installed_names() -> None:
    import monGARS.components.images
    import monGARS.pipelines.compile

    assert Path(monGARS.components.images.__file__).parent == REPO / "components"
    assert monGARS.pipelines.compile.COMPILED_PIPELINE == REPO / "pipelines" / "mongars.yaml"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources (no build/ or egg-info left in the tree)."""
    scratch = tmp_path_factory.mktemp("wheel")
    source = scratch / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in SOURCE_FOLDERS:
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = scratch / "dist"
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index"]
    command += ["--no-build-isolation", "--wheel-dir", str(out), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("*.whl")
    return built


def test_wheel_puts_nothing_generic_at_the_top(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    (dist_info,) = top - {"monGARS"}
    assert dist_info.endswith(".dist-info") and dist_info.startswith("mongars_mlops-")


def test_wheel_holds_every_source_file_at_its_installed_path(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for top in SOURCE_FOLDERS:
        prefix = "" if top == "monGARS" else "monGARS/"
        for path in (REPO / top).rglob("*"):
            relative = path.relative_to(REPO).as_posix()
            if path.is_file() and "__pycache__" not in relative and path.suffix != ".pyc":
                expected.add(prefix + relative)
    assert "monGARS/pipelines/mongars.yaml" in expected
    assert sorted(expected - names) == []


def test_installed_layout_imports_without_the_checkout(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sys, monGARS, monGARS.components.images as images, monGARS.pipelines.compile as c\n"
        "print(monGARS.__file__); print(images.__file__); print(c.COMPILED_PIPELINE.is_file())\n"
        "print(any(type(f).__name__ == '_RootPackageFinder' for f in sys.meta_path))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    package, images, compiled, finder = result.stdout.split()
    assert Path(package) == site / "monGARS" / "__init__.py"
    assert Path(images) == site / "monGARS" / "components" / "images.py"
    assert (compiled, finder) == ("True", "False")
