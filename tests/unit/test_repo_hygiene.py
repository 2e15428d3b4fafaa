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


def _imported_modules(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The absolute module names ``path`` imports; ``from a import b`` gives ``a`` and ``a.b``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _within(module: str, packages: set[str]) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in packages)


def test_components_and_pipelines_import_only_stdlib_and_kfp() -> None:
    """At top level: the standard library, kfp and each other, so compiling needs no torch."""
    allowed = set(sys.stdlib_module_names) | {"kfp", "__future__"}
    own = {"monGARS.components", "monGARS.pipelines"}
    for folder in ("components", "pipelines"):
        for path in (REPO / folder).glob("*.py"):
            imported = _imported_modules(path, top_level_only=True)
            extra = {m for m in imported if m.split(".")[0] not in allowed and not _within(m, own)}
            assert not extra, f"{path.relative_to(REPO)} imports {sorted(extra)} at top level"


# Which of the project's layers each layer may import, anywhere in a module (lazy imports
# included): the library under everything; components adapt the library; the pipeline composes
# components; deploy compiles and runs the pipeline; the CLI drives them all.
LAYERS = {
    "monGARS.version": set(),
    "monGARS.mlops": {"monGARS.version"},
    "monGARS.components": {"monGARS.version", "monGARS.mlops"},
    "monGARS.pipelines": {"monGARS.version", "monGARS.mlops", "monGARS.components"},
    "monGARS.deploy": {"monGARS.version", "monGARS.mlops", "monGARS.pipelines"},
}
_LAYER_FOLDERS = {
    "monGARS.version": REPO / "monGARS" / "version.py",
    "monGARS.mlops": REPO / "monGARS" / "mlops",
    "monGARS.components": REPO / "components",
    "monGARS.pipelines": REPO / "pipelines",
    "monGARS.deploy": REPO / "monGARS" / "deploy",
}


def _layer_of(module: str) -> str | None:
    for layer in LAYERS:
        if _within(module, {layer}):
            return layer
    return None


def test_layers_import_only_downwards() -> None:
    for layer, allowed in LAYERS.items():
        top = _LAYER_FOLDERS[layer]
        paths = [top] if top.is_file() else sorted(top.rglob("*.py"))
        assert paths, f"no module found for layer {layer} at {top}"
        for path in paths:
            for module in _imported_modules(path):
                target = _layer_of(module)
                if module.startswith("monGARS."):  # every module of the project has a layer
                    assert target is not None, f"{path.relative_to(REPO)} imports {module}"
                assert target in {None, layer, *allowed}, (
                    f"{path.relative_to(REPO)} ({layer}) imports {module} ({target})"
                )


def test_layer_rule_sees_a_wrong_direction(tmp_path: Path) -> None:
    """The import reader finds lazy and ``from`` imports, so the layer test can fail."""
    module = tmp_path / "lazy.py"
    module.write_text(
        "def run():\n"
        "    from monGARS.deploy import local_run\n"
        "    import monGARS.pipelines.compile\n",
        encoding="utf-8",
    )
    imported = _imported_modules(module)
    assert {_layer_of(name) for name in imported} == {"monGARS.deploy", "monGARS.pipelines"}
    assert _imported_modules(module, top_level_only=True) == set()


def test_library_never_imports_kfp() -> None:
    for path in (REPO / "monGARS" / "mlops").rglob("*.py"):
        for module in _imported_modules(path):
            assert module.split(".")[0] != "kfp", f"{path.relative_to(REPO)} imports {module}"
