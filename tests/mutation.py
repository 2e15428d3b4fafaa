"""Mutation testing of the modules whose bugs cost users most, one module at a time (cosmic-ray).

``python tests/mutation.py [MODULE_SUBSTRING ...]`` (``make mutation``): for each target of
tests/mutation.toml, in a scratch copy of the checkout (cosmic-ray edits files in place), every
mutant of the module runs only that module's tests; the score is killed / (mutants - equivalent).
Equivalent mutants (no behaviour can tell them apart) are listed with a reason in
tests/mutation-equivalent.toml; mutants inside annotations that ``from __future__ import
annotations`` leaves unevaluated are equivalent by construction and counted apart. Prints one
line per module and every survivor, writes the figures to ``mutation-report.json`` in the
current folder, and exits 1 when a module is under the bar.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "tests" / "mutation.toml"
EQUIVALENT = ROOT / "tests" / "mutation-equivalent.toml"
BAR = 0.90
# Replacements that only ever crash at once (``a < b`` -> ``a is b``, ``x / y`` -> ``x << y``):
# always killed, they add minutes and no information. Same-family swaps stay (``/`` -> ``*``,
# ``//`` -> ``/``, ``<`` -> ``<=``, ``in`` -> ``not in``, ``is`` -> ``is not``).
EXCLUDED_OPERATORS = [
    r"core/ReplaceBinaryOperator_\w+_(Pow|LShift|RShift|BitOr|BitAnd|BitXor|MatMult)$",
    r"core/ReplaceComparisonOperator_(?!Is)\w+_(Is|IsNot)$",
    r"core/ReplaceComparisonOperator_(?!In|NotIn)\w+_(In|NotIn)$",
    r"core/ReplaceComparisonOperator_(Is|IsNot|In|NotIn)_(Eq|NotEq|Lt|LtE|Gt|GtE)$",
]


def _checkout_copy(scratch: Path) -> Path:
    """Tracked and untracked-not-ignored files of the checkout, copied; the venv linked."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    copy = scratch / "tree"
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            target = copy / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    venv = ROOT / ".venv"
    if venv.exists():
        (copy / ".venv").symlink_to(venv.resolve())
    return copy


def _config(module: str, tests: list[str], timeout: float, warm: Path | None = None) -> str:
    pytest_args = ["-x", "-q", "-p", "no:cacheprovider", *tests]
    command = [sys.executable, "-m", "pytest", *pytest_args]
    if warm is not None:  # through tests/mutation_warm.py's server (a target's ``preload``)
        runner = str(Path("tests") / "mutation_warm.py")
        command = [sys.executable, runner, "run", str(warm), str(timeout), *pytest_args]
    excluded = ", ".join(json.dumps(pattern) for pattern in EXCLUDED_OPERATORS)
    return (
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(module)}\n"
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(' '.join(command))}\n"
        '[cosmic-ray.distributor]\nname = "local"\n'
        f"[cosmic-ray.filters.operators-filter]\nexclude-operators = [{excluded}]\n"
    )


def _equivalents(module: str) -> dict[tuple[int, str, int], str]:
    """(line, operator, occurrence) -> reason, for ``module``."""
    if not EQUIVALENT.is_file():
        return {}
    entries = tomllib.loads(EQUIVALENT.read_text(encoding="utf-8")).get("equivalent", [])
    return {
        (int(e["line"]), str(e["operator"]), int(e.get("occurrence", -1))): str(e["reason"])
        for e in entries
        if e["module"] == module
    }


def _annotation_spans(source: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the module's annotations are, when ``from __future__ import annotations`` makes them
    strings that are never evaluated: a mutant inside one is equivalent by construction."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    postponed = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )
    if not postponed:
        return []
    annotations: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            annotations.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
    return [
        ((a.lineno, a.col_offset), (a.end_lineno or a.lineno, a.end_col_offset or 0))
        for a in annotations
    ]


def _results(session: Path, module: str, source: Path) -> dict:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    equivalent = _equivalents(module)
    annotations = _annotation_spans(source)
    figures = {"mutants": 0, "killed": 0, "survived": 0, "equivalent": 0, "incompetent": 0}
    figures["annotation"] = 0  # of the equivalent ones: inside a never-evaluated annotation
    survivors: list[str] = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            (mutation,) = item.mutations
            figures["mutants"] += 1
            where = (mutation.start_pos[0], mutation.operator_name, mutation.occurrence)
            if result.test_outcome == TestOutcome.KILLED:
                figures["killed"] += 1
            elif result.test_outcome == TestOutcome.INCOMPETENT:
                # The worker could not test it (interrupted, crashed): neither killed nor
                # survived; left out of the score and printed, so a broken run shows.
                figures["incompetent"] += 1
            elif where in equivalent or (where[0], where[1], -1) in equivalent:
                figures["equivalent"] += 1
            elif any(start <= tuple(mutation.start_pos) < end for start, end in annotations):
                figures["equivalent"] += 1
                figures["annotation"] += 1
            else:
                figures["survived"] += 1
                survivors.append(
                    f"{module}:{mutation.start_pos[0]} {mutation.operator_name} "
                    f"(occurrence {mutation.occurrence})"
                )
    scored = figures["mutants"] - figures["equivalent"] - figures["incompetent"]
    figures["score"] = round(figures["killed"] / scored, 4) if scored else 1.0
    figures["survivors"] = survivors
    return figures


def run_target(target: dict, scratch: Path, timeout: float) -> dict:
    module, tests = target["module"], list(target["tests"])
    tree = _checkout_copy(scratch)
    config = scratch / "cosmic-ray.toml"
    session = scratch / "session.sqlite"
    preload = list(target.get("preload", []))
    warm = scratch / "warm.sock" if preload else None
    config.write_text(_config(module, tests, timeout, warm), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["TOKENIZERS_PARALLELISM"] = "false"
    bin_dir = Path(sys.executable).parent
    started = time.monotonic()
    server = None
    if warm is not None:
        server = subprocess.Popen(
            [
                sys.executable,
                str(tree / "tests" / "mutation_warm.py"),
                "serve",
                str(warm),
                *preload,
            ],
            cwd=tree,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        if server.stdout is None or server.stdout.readline().strip() != "ready":
            raise SystemExit(f"{module}: the warm runner did not start (preload {preload})")
    try:
        for command in (
            [bin_dir / "cosmic-ray", "init", config, session],
            [bin_dir / "cr-filter-operators", session, config],
            [bin_dir / "cosmic-ray", "baseline", config],
            [bin_dir / "cosmic-ray", "exec", config, session],
        ):
            done = subprocess.run(
                [str(part) for part in command], cwd=tree, env=env, capture_output=True, text=True
            )
            if done.returncode != 0:
                raise SystemExit(
                    f"{module}: {' '.join(str(p) for p in command[:2])} failed "
                    f"(the tests must pass unmutated):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
                )
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    figures = _results(session, module, tree / module)
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures["module"], figures["tests"] = module, tests
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="run targets whose module path contains these")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant")
    parser.add_argument("--report", type=Path, default=Path("mutation-report.json"))
    args = parser.parse_args(argv)
    targets = tomllib.loads(TARGETS.read_text(encoding="utf-8"))["target"]
    if args.only:
        targets = [t for t in targets if any(part in t["module"] for part in args.only)]
    report = []
    for target in targets:
        with tempfile.TemporaryDirectory(prefix="mongars-mutation-") as scratch:
            figures = run_target(target, Path(scratch), args.timeout)
        report.append(figures)
        print(
            f"{figures['module']}: {figures['mutants']} mutants, killed "
            f"{figures['killed']}, survived {figures['survived']}, "
            f"equivalent {figures['equivalent']} ({figures['annotation']} in annotations), "
            f"untested {figures['incompetent']}, score {figures['score']:.1%} "
            f"({figures['seconds']:.0f} s)",
            flush=True,
        )
        for survivor in figures["survivors"]:
            print(f"  survived: {survivor}", flush=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if all(f["score"] >= BAR for f in report) else 1


if __name__ == "__main__":
    sys.exit(main())
