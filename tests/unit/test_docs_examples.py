"""Every example in README.md and docs/*.md is checked against what it names (issue 22, point 8).

Extracted from the Markdown: shell blocks (``mongars``, ``make``, ``kfp`` and
``python mongars_multistage_pipeline.py`` command lines, continuation lines joined), inline
``mongars ...`` commands, YAML/JSON blocks and Python blocks. Each is checked by the thing that
will read it: the CLI's own argument parser (subcommands, flags, their values), the compiled
pipeline (``--param`` and parameters files: names exist, types fit, placement values valid), the
Makefile (targets and variables), the KFP CLI's click commands, ``json``/``yaml`` parsers, and
Python's importer (every name a Python example imports exists). A docs edit that adds
``gpu_limit: 1`` to a parameters file, or a flag that does not exist, fails here.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"(?<!`)`(mongars [^`]+)`(?!`)")
_ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
_SHELL_SEPARATORS = {"&&", "||", ";", "|"}


@dataclass(frozen=True)
class Example:
    doc: str
    line: int
    kind: str  # shell, inline, yaml, json, python
    text: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def _examples() -> list[Example]:
    found: list[Example] = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(REPO).as_posix()
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            language, body = match.group(1), match.group(2)
            kind = {"bash": "shell", "sh": "shell", "yaml": "yaml", "yml": "yaml"}.get(
                language, language
            )
            if kind in ("shell", "yaml", "json", "python"):
                found.append(Example(name, line, kind, body))
        fenced = [(m.start(), m.end()) for m in _FENCE.finditer(text)]
        for match in _INLINE.finditer(text):
            if not any(start <= match.start() < end for start, end in fenced):
                line = text.count("\n", 0, match.start()) + 1
                found.append(Example(name, line, "inline", match.group(1)))
    return found


EXAMPLES = _examples()


def _command_lines(body: str) -> Iterator[list[str]]:
    """Each simple command of a shell block, as argv (``$(...)`` replaced by a word)."""
    joined = re.sub(r"\\\n\s*", " ", body)
    for raw in joined.splitlines():
        line = re.sub(r"\$\([^)]*\)", "X", raw)
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as error:
            raise AssertionError(f"unparseable shell line {raw!r}: {error}") from None
        command: list[str] = []
        for token in [*tokens, ";"]:
            if token in _SHELL_SEPARATORS:
                while command and _ENV_ASSIGNMENT.match(command[0]):
                    command.pop(0)
                if command:
                    yield command
                command = []
            else:
                command.append(token)


@pytest.fixture(scope="module")
def package() -> Any:
    from monGARS.deploy.pipeline_package import load_package

    compiled = REPO / "pipelines" / "mongars.yaml"
    if not compiled.is_file():
        pytest.skip("pipelines/mongars.yaml is not compiled yet")
    return load_package(compiled)


def _parse(parser: Any, argv: list[str]) -> Any:
    """argparse's own verdict, as an assertion message instead of SystemExit."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return parser.parse_args(argv)
    except SystemExit:
        raise AssertionError(stderr.getvalue().strip().splitlines()[-1]) from None


def _check_parameters(package: Any, flags: list[str], file_values: dict[str, Any]) -> None:
    from monGARS.deploy.pipeline_package import parse_param_flags, resolve_parameters

    resolve_parameters(package, parse_param_flags(flags), file_values)


def _check_mongars(argv: list[str], package: Any) -> None:
    from monGARS.cli import build_parser

    args = _parse(build_parser(), argv)
    if getattr(args, "param", None):
        _check_parameters(package, args.param, {})


def _check_runbook(argv: list[str]) -> None:
    from monGARS.cli import build_runbook_parser

    _parse(build_runbook_parser(), argv)


def _makefile_text() -> str:
    return (REPO / "Makefile").read_text() + (REPO / "images" / "images.mk").read_text()


def _check_make(argv: list[str]) -> None:
    from monGARS.cli import build_parser

    makefile = _makefile_text()
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+):", makefile, re.M))
    for token in argv:
        if "=" in token:
            variable, _, value = token.partition("=")
            assert re.search(rf"\$\({variable}\)|^{variable}\s*[?:]?=", makefile, re.M), (
                f"make variable {variable} is not used by the Makefile"
            )
            if variable == "RUN_ARGS":  # handed to `mongars run`
                _parse(build_parser(), ["run", *shlex.split(value)])
        else:
            assert token in targets, f"make target {token!r} does not exist"


def _check_kfp(argv: list[str]) -> None:
    """The KFP CLI's own click parser, group by group down to the command (nothing runs)."""
    import click
    from kfp.cli.cli import cli

    command: Any = cli
    rest = list(argv)
    try:
        while True:
            context = command.make_context("kfp", rest, resilient_parsing=False)
            if not isinstance(command, click.Group) or not context.protected_args:
                return
            name, *rest = [*context.protected_args, *context.args]
            found = command.get_command(context, name)
            assert found is not None, f"kfp has no command {name!r}"
            command = found
    except click.exceptions.ClickException as error:
        raise AssertionError(f"kfp: {error.format_message()}") from None


def _check_shell(example: Example, package: Any) -> int:
    checked = 0
    for argv in _command_lines(example.text):
        if argv[0] == "mongars":
            _check_mongars(argv[1:], package)
        elif argv[0] == "make":
            _check_make(argv[1:])
        elif argv[0] == "kfp":
            _check_kfp(argv[1:])
        elif argv[:2] == ["python", "mongars_multistage_pipeline.py"]:
            _check_runbook(argv[2:])
        else:
            continue
        checked += 1
    return checked


def _check_inline(example: Example) -> int:
    """An inline ``mongars <command> --flag ...``: the command and every flag exist."""
    from monGARS.cli import build_parser

    argv = shlex.split(re.sub(r"\$\([^)]*\)", "X", example.text))
    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    if len(argv) < 2 or argv[1] not in commands.choices:
        return 0  # prose such as `mongars submit/schedule/preflight`
    command, rest = commands.choices[argv[1]], argv[2:]
    # Down nested commands (`mongars champion rollback ...`): the flags belong to the last one.
    while rest and (nested := _subcommands(command)) and rest[0] in nested:
        command, rest = nested[rest[0]], rest[1:]
    options = command._option_string_actions
    for token in rest:
        flag = token.split("=", 1)[0]
        if flag.startswith("--"):
            assert flag in options, f"{command.prog} has no option {flag}"
    return 1


def _subcommands(parser: Any) -> dict[str, Any]:
    """A parser's subcommands by name ({} when it has none)."""
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            return dict(action.choices)
    return {}


def _is_parameters(values: Any, package: Any, text: str) -> bool:
    if not isinstance(values, dict):
        return False
    return "params" in text.splitlines()[0] or any(key in package.parameters for key in values)


def _check_yaml(example: Example, package: Any) -> int:
    values = yaml.safe_load(example.text)
    if _is_parameters(values, package, example.text):
        _check_parameters(package, [], values)
    elif isinstance(values, dict) and "sources" in values:  # a build_datasets config
        from monGARS.mlops.configs import load_config
        from monGARS.mlops.datasets.config import DatasetsConfig

        load_config(DatasetsConfig, values)
    return 1


def _check_python(example: Example) -> int:
    tree = ast.parse(example.text)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
    return 1


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_every_docs_example_is_valid(example: Example, package: Any) -> None:
    if example.kind == "shell":
        _check_shell(example, package)
    elif example.kind == "inline":
        _check_inline(example)
    elif example.kind == "yaml":
        _check_yaml(example, package)
    elif example.kind == "json":  # an elided part ({…}, […]) stands for an empty one
        json.loads(example.text.replace("{…}", "{}").replace("[…]", "[]"))
    elif example.kind == "python":
        _check_python(example)


def test_the_extraction_finds_the_examples_it_must_check() -> None:
    """The checks above are only as good as what they see: the CI command, the parameters files
    and the runbook line must all be found (a broken extractor would pass vacuously)."""
    shell = [e for e in EXAMPLES if e.kind == "shell"]
    commands = [argv for e in shell for argv in _command_lines(e.text)]
    assert any(argv[:2] == ["mongars", "submit"] and "--wait" in argv for argv in commands)
    assert any(argv[:2] == ["python", "mongars_multistage_pipeline.py"] for argv in commands)
    assert any(argv[0] == "make" and "compile" in argv for argv in commands)
    params = [e for e in EXAMPLES if e.kind == "yaml" and "gpu_node_selector" in e.text]
    assert len(params) >= 2
    assert any(e.kind == "inline" for e in EXAMPLES)


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("yaml", '# my-params.yaml\ngpu_node_selector: {"a": "b"}\ngpu_limit: 1\n', "gpu_limit"),
        ("yaml", 'gpu_node_selector: {"nvidia.com/gpu.present": true}\n', "string values"),
        ("shell", "mongars submit --host h --wiat\n", "unrecognized arguments: --wiat"),
        ("shell", "mongars submit --param lora_rank=8\n", "lora_rank: not a parameter"),
        ("shell", "mongars submit --param raft=maybe\n", "raft: expected boolean"),
        ("shell", "make compiel\n", "make target 'compiel' does not exist"),
        ("shell", 'make run RUN_ARGS="--max-stepz 80"\n', "unrecognized arguments"),
        ("shell", "kfp run creat --watch\n", "kfp: Unrecognized command 'creat'"),
        ("shell", "kfp run create --service-account x\n", "No such option '--service-account'"),
        ("shell", "python mongars_multistage_pipeline.py --run-idd x\n", "unrecognized"),
        ("inline", "mongars compile --accelerator-kind a100", "has no option"),
        ("python", "from monGARS.mlops.training.sft.train import train_sfft\n", "train_sfft"),
    ],
)
def test_a_wrong_example_is_caught(kind: str, text: str, message: str, package: Any) -> None:
    from monGARS.mlops.errors import MongarsError

    example = Example("doc.md", 1, kind, text)
    with pytest.raises((AssertionError, MongarsError), match=re.escape(message)):
        test_every_docs_example_is_valid(example, package)
