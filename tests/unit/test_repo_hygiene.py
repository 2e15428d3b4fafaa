"""The tree stays lint-clean and formatted, and the layering rules hold."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _ruff() -> str:
    found = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("ruff is not installed in the test environment; run `make setup`")
    return found


def test_ruff_check_is_clean() -> None:
    result = subprocess.run([_ruff(), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]


def test_ruff_format_is_clean() -> None:
    result = subprocess.run(
        [_ruff(), "format", "--check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:]


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_components_and_pipelines_import_only_stdlib_and_kfp() -> None:
    allowed = set(sys.stdlib_module_names) | {"kfp", "components", "pipelines", "__future__"}
    for folder in ("components", "pipelines"):
        for path in (REPO / folder).glob("*.py"):
            extra = _top_level_imports(path) - allowed
            if path.name == "local_run.py":
                extra -= {"monGARS"}  # the local driver runs the library, it is not compiled
            assert not extra, f"{path.relative_to(REPO)} imports {sorted(extra)} at top level"


def test_library_never_imports_kfp() -> None:
    for path in (REPO / "monGARS" / "mlops").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            for module in modules:
                assert module.split(".")[0] not in {"kfp", "pipelines", "components"}, (
                    f"{path.relative_to(REPO)} imports {module}"
                )
