"""Static facts about a Python source tree (ast only: nothing is imported or executed).

Per file: its imports (relative imports resolved to absolute module names), its functions and
classes with signatures and docstrings, and its call sites into LLM frameworks, resolved through
import aliases (``import torch.nn as nn; nn.Linear(...)`` -> ``torch.nn.Linear``), including
imports made inside functions. Across files: which project modules import which.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from monGARS.mlops.datasets.codetree import SourceFile

FRAMEWORKS = frozenset(
    {
        "transformers",
        "torch",
        "peft",
        "trl",
        "unsloth",
        "datasets",
        "accelerate",
        "bitsandbytes",
        "llama_cpp",
        "gguf",
        "kfp",
        "tokenizers",
        "safetensors",
        "huggingface_hub",
        "sentence_transformers",
        "vllm",
        "llm2vec",
    }
)
MAX_DOC_CHARS = 600

Fact = dict[str, Any]


def doc_summary(doc: str | None) -> str:
    """The first paragraph of a docstring on one line (the part that says what and why)."""
    if not doc:
        return ""
    paragraph = doc.strip().split("\n\n")[0]
    text = " ".join(line.strip() for line in paragraph.splitlines())
    return text[:MAX_DOC_CHARS]


def signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return f"{prefix} {node.name}({ast.unparse(node.args)}){returns}"


def parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[dict[str, str]]:
    """Named parameters with their annotation and default (``self``/``cls`` left out)."""
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(
        args.defaults
    )
    pairs = list(zip(positional, defaults, strict=True))
    pairs += list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    out = []
    for arg, default in pairs:
        if arg.arg in ("self", "cls"):
            continue
        out.append(
            {
                "name": arg.arg,
                "annotation": ast.unparse(arg.annotation) if arg.annotation else "",
                "default": ast.unparse(default) if default is not None else "",
            }
        )
    return out


def resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    """``from ..x import y`` inside ``module`` -> the absolute module ``x`` names."""
    if level == 0:
        return target or ""
    package = module if is_package else module.rpartition(".")[0]
    parts = package.split(".") if package else []
    if level > 1:
        parts = parts[: len(parts) - (level - 1)] if level - 1 <= len(parts) else []
    base = ".".join(parts)
    if target:
        return f"{base}.{target}" if base else target
    return base


@dataclass
class FileFacts:
    """Everything mined from one file."""

    source: SourceFile
    imports: set[str] = field(default_factory=set)  # absolute module names (or module.attr)
    functions: list[Fact] = field(default_factory=list)
    classes: list[Fact] = field(default_factory=list)
    calls: list[Fact] = field(default_factory=list)
    error: str | None = None


class _Visitor(ast.NodeVisitor):
    def __init__(self, facts: FileFacts, is_package: bool) -> None:
        self.facts = facts
        self.module = facts.source.module
        self.is_package = is_package
        self.scopes: list[dict[str, str]] = [{}]
        self.names: list[str] = []  # enclosing class/function names
        self.kinds: list[str] = []  # "class" or "function", parallel to ``names``

    # imports ---------------------------------------------------------------------------
    def _bind(self, alias: str, target: str) -> None:
        self.scopes[-1][alias] = target

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.facts.imports.add(alias.name)
            if alias.asname:
                self._bind(alias.asname, alias.name)
            else:
                top = alias.name.split(".")[0]
                self._bind(top, top)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = resolve_relative(self.module, self.is_package, node.level, node.module)
        for alias in node.names:
            if alias.name == "*":
                self.facts.imports.add(base)
                continue
            full = f"{base}.{alias.name}" if base else alias.name
            self.facts.imports.add(full)
            self._bind(alias.asname or alias.name, full)

    def _lookup(self, name: str) -> str | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    # definitions -----------------------------------------------------------------------
    def _qualname(self, name: str) -> str:
        return ".".join([*self.names, name])

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        doc = ast.get_docstring(node)
        in_class = bool(self.kinds) and self.kinds[-1] == "class"
        public = not node.name.startswith("_")
        if (public or doc) and not self._inside_function():
            self.facts.functions.append(
                {
                    "type": "function",
                    "module": self.module,
                    "path": self.facts.source.display_path,
                    "qualname": self._qualname(node.name),
                    "kind": "method" if in_class else "function",
                    "signature": signature(node),
                    "parameters": parameters(node),
                    "returns": ast.unparse(node.returns) if node.returns else "",
                    "docstring": doc_summary(doc),
                    "line": node.lineno,
                }
            )
        self.names.append(node.name)
        self.kinds.append("function")
        self.scopes.append({})
        self.generic_visit(node)
        self.scopes.pop()
        self.kinds.pop()
        self.names.pop()

    def _inside_function(self) -> bool:
        return "function" in self.kinds

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if not self._inside_function():
            methods = [
                signature(item)
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                and (not item.name.startswith("_") or item.name == "__call__")
            ]
            fields = [
                f"{item.target.id}: {ast.unparse(item.annotation)}"
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            ]
            self.facts.classes.append(
                {
                    "type": "class",
                    "module": self.module,
                    "path": self.facts.source.display_path,
                    "name": self._qualname(node.name),
                    "bases": [ast.unparse(base) for base in node.bases],
                    "docstring": doc_summary(ast.get_docstring(node)),
                    "methods": methods,
                    "fields": fields,
                    "line": node.lineno,
                }
            )
        self.names.append(node.name)
        self.kinds.append("class")
        self.generic_visit(node)
        self.kinds.pop()
        self.names.pop()

    # calls -----------------------------------------------------------------------------
    def _dotted(self, node: ast.expr) -> str | None:
        attrs: list[str] = []
        while isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        base = self._lookup(node.id)
        if base is None:
            return None
        return ".".join([base, *reversed(attrs)])

    def visit_Call(self, node: ast.Call) -> None:
        name = self._dotted(node.func)
        if name is not None:
            top = name.split(".")[0]
            if top in FRAMEWORKS:
                self.facts.calls.append(
                    {
                        "framework": top,
                        "call": name,
                        "function": ".".join(self.names) or "<module>",
                        "line": node.lineno,
                    }
                )
        self.generic_visit(node)


def mine_file(source: SourceFile) -> FileFacts:
    """Facts of one file; a file that does not parse is reported, not fatal."""
    facts = FileFacts(source)
    try:
        text = source.path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=source.relative)
    except (SyntaxError, UnicodeDecodeError, ValueError) as error:
        facts.error = f"{type(error).__name__}: {error}".splitlines()[0][:200]
        return facts
    _Visitor(facts, source.path.name == "__init__.py").visit(tree)
    return facts


@dataclass
class TreeFacts:
    """Facts of a whole tree, with module-level dependency facts computed across files."""

    files: list[FileFacts]
    module_files: dict[str, FileFacts]

    def internal_modules(self, imports: set[str]) -> list[str]:
        """Imported names mapped onto the tree's modules (``pkg.mod.func`` -> ``pkg.mod``)."""
        found = set()
        for name in imports:
            candidate = name
            while candidate:
                if candidate in self.module_files:
                    found.add(candidate)
                    break
                candidate = candidate.rpartition(".")[0]
        return sorted(found)

    def external_packages(self, imports: set[str]) -> list[str]:
        tops = {name.split(".")[0] for name in imports}
        own = {module.split(".")[0] for module in self.module_files}
        return sorted(top for top in tops if top and top not in own and top != "__future__")

    def module_facts(self) -> Iterator[tuple[FileFacts, Fact]]:
        """Per-file dependency facts, framework usage and reverse dependencies, stably ordered."""
        importers: dict[str, set[str]] = {}
        for facts in self.files:
            for target in self.internal_modules(facts.imports):
                if target != facts.source.module:
                    importers.setdefault(target, set()).add(facts.source.module)
        for facts in self.files:
            module = facts.source.module
            internal = [m for m in self.internal_modules(facts.imports) if m != module]
            external = self.external_packages(facts.imports)
            if internal or external:
                yield (
                    facts,
                    {
                        "type": "imports",
                        "module": module,
                        "path": facts.source.display_path,
                        "internal": internal,
                        "external": external,
                    },
                )
            if module in importers:
                yield (
                    facts,
                    {
                        "type": "imported_by",
                        "module": module,
                        "path": facts.source.display_path,
                        "importers": sorted(importers[module]),
                    },
                )
            by_framework: dict[str, list[Fact]] = {}
            for call in facts.calls:
                by_framework.setdefault(call["framework"], []).append(
                    {key: call[key] for key in ("call", "function", "line")}
                )
            for framework, calls in sorted(by_framework.items()):
                yield (
                    facts,
                    {
                        "type": "framework_usage",
                        "module": module,
                        "path": facts.source.display_path,
                        "framework": framework,
                        "calls": calls,
                    },
                )


def mine_tree(sources: list[SourceFile]) -> TreeFacts:
    files = [mine_file(source) for source in sources]
    return TreeFacts(files, {facts.source.module: facts for facts in files})
