"""The runbook's folder layout under ``runs/<run-id>/``, as symlinks onto the latest attempt.

KFP keeps every artifact under ``runs/<run-id>/kfp/<pipeline>-<timestamp>/...``, a layout only
KFP explains. The original runbook's users look for::

    runs/<run-id>/french_datasets/                      the French corpora, one folder per kind
    runs/<run-id>/internal_datasets/<module>/           train.jsonl, val.jsonl (mined from code)
    runs/<run-id>/<module>/adapter/                     the module's LoRA adapter (PEFT)
    runs/<run-id>/<module>/mntp/                        the llm2vec stage's folder (MNTP + SimCSE
                                                        figures, its config, the encoder)
    runs/<run-id>/<module>/simcse/                      the final encoder model (MNTP, then SimCSE)
    runs/<run-id>/<module>/gguf/                        GGUF files, Modelfile, bundle.json
    runs/<run-id>/report.html                           the run report (a copy, see below)

This module makes those names relative symlinks onto the artifacts of the latest attempt (never
copies: weights stay where KFP wrote them) and returns the runbook's ``state.json`` fields. Links
from an earlier attempt that the latest one did not produce are removed, so the view never mixes
attempts. Only symlinks are ever created or removed here, with one exception: ``report.html`` is
a copy of the report (a few hundred KB at most), because KFP names the artifact ``report_html``
and a browser shows a link to a file without the ``.html`` extension as plain text.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import atomic_file

FRENCH_DATASETS = "french_datasets"
INTERNAL_DATASETS = "internal_datasets"
REPORT_COPY = "report.html"
# Folders the local run itself keeps in the run folder: a module with one of these names gets its
# view under "<name>_module" instead.
RESERVED_NAMES = frozenset(
    {
        "kfp",
        "cache",
        "checkpoints",
        "model-cache",
        "logs",
        FRENCH_DATASETS,
        INTERNAL_DATASETS,
        "state.json",
    }
)
# Per-module views: link name -> (outputs key of the artifact folder, sub-folder inside it).
MODULE_VIEWS: dict[str, tuple[str, str]] = {
    "adapter": ("sft_adapter", "adapter"),
    "mntp": ("encoder", ""),
    "simcse": ("encoder", "encoder"),
    "gguf": ("gguf_bundle", ""),
}
# The stage whose output each module view shows: a command whose DAG stops before that stage
# leaves the view out (its outputs hold nothing for it), so the view is removed.
VIEW_STAGES: dict[str, str] = {
    "adapter": "sft",
    "mntp": "llm2vec",
    "simcse": "llm2vec",
    "gguf": "export",
}


def module_view_name(module: str) -> str:
    """The folder name of a module's view (its own name unless the run folder already uses it)."""
    return f"{module}_module" if module in RESERVED_NAMES else module


def _link(run_dir: Path, name: str, target: Path) -> bool:
    """Point ``run_dir/name`` at ``target`` with a relative symlink, replaced in one rename.

    Returns False, touching nothing, when something that is not a link already has that name.
    """
    link = run_dir / name
    if link.parent.exists() and not link.parent.is_dir():
        return False
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() and not link.is_symlink():
        return False
    partial = link.with_name(f".{link.name}.link-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    partial.symlink_to(os.path.relpath(target, link.parent))
    os.replace(partial, link)
    return True


def _remove_link(run_dir: Path, name: str) -> None:
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts:
        return  # state.json only ever lists names inside the run folder; ignore anything else
    link = run_dir / name
    if link.is_symlink() or (name == REPORT_COPY and link.is_file()):
        link.unlink()
    # Drop the module folders this module created once they hold nothing else.
    parent = link.parent
    while parent != run_dir and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def _planned_links(outputs: Mapping[str, Any]) -> dict[str, Path]:
    """Every view the outputs allow: relative link name -> existing target."""
    planned: dict[str, Path] = {}
    datasets = Path(outputs["datasets"]) if outputs.get("datasets") else None
    if datasets is not None and (datasets / "corpora").is_dir():
        planned[FRENCH_DATASETS] = datasets / "corpora"
    if outputs.get("report") and Path(outputs["report"]).is_file():
        planned[REPORT_COPY] = Path(outputs["report"])
    for module, entry in sorted((outputs.get("modules") or {}).items()):
        if datasets is not None and (datasets / "modules" / module).is_dir():
            planned[f"{INTERNAL_DATASETS}/{module}"] = datasets / "modules" / module
        folder = module_view_name(module)
        for view, (key, sub) in MODULE_VIEWS.items():
            location = (entry or {}).get(key)
            if location:
                target = Path(location) / sub if sub else Path(location)
                if target.exists():
                    planned[f"{folder}/{view}"] = target
    return planned


def refresh_layout(
    run_dir: str | Path, outputs: Mapping[str, Any], previous_links: Iterable[str] = ()
) -> list[str]:
    """Make the runbook's view of ``outputs`` under ``run_dir``; return the links it holds.

    ``previous_links`` are the links an earlier attempt made (from ``state.json``); those the
    latest attempt does not produce are removed.
    """
    root = Path(run_dir)
    planned = _planned_links(outputs)
    for name in sorted(set(previous_links) - set(planned)):
        _remove_link(root, name)
    made = []
    for name, target in planned.items():
        if _copy_report(root, target) if name == REPORT_COPY else _link(root, name, target):
            made.append(name)
    return sorted(made)


def views_left_out(links: Iterable[str], stages_run: Iterable[str]) -> dict[str, list[str]]:
    """The module views among ``links`` that a run of ``stages_run`` does not make again.

    Returns view folder -> views (``{"training": ["gguf", "mntp", "simcse"]}``): what the next
    attempt will remove when it finishes, which the command says before it starts.
    """
    reached = set(stages_run)
    left_out: dict[str, list[str]] = {}
    for name in sorted(links):
        folder, _, view = name.rpartition("/")
        stage = VIEW_STAGES.get(view)
        if folder and folder != INTERNAL_DATASETS and stage and stage not in reached:
            left_out.setdefault(folder, []).append(view)
    return left_out


def _copy_report(run_dir: Path, report: Path) -> bool:
    """``run_dir/report.html``: the report, copied in one rename (it replaces an older link)."""
    target = run_dir / REPORT_COPY
    if target.is_dir() and not target.is_symlink():
        return False
    with atomic_file(target) as partial:
        shutil.copyfile(report, partial)
    return True


def runbook_fields(
    run_dir: str | Path, outputs: Mapping[str, Any], links: Iterable[str]
) -> dict[str, Any]:
    """The runbook's ``state.json`` fields, as paths through the view (stable across attempts).

    Top level: ``french_datasets_dir`` and ``internal_datasets_dir``. Per module:
    ``train_path``/``val_path``, ``train_count``/``val_count``, ``adapter_path``, ``mntp_dir``,
    ``simcse_dir``, ``gguf_dir`` and ``current_model_dir`` — the newest model folder along the
    runbook's chain (adapter, then the llm2vec encoder), the one the next stage starts from.
    """
    root = Path(run_dir)
    links = set(links)

    def path_of(name: str, *inner: str) -> str:
        return str(root.joinpath(name, *inner)) if name in links else ""

    fields: dict[str, Any] = {
        "french_datasets_dir": path_of(FRENCH_DATASETS),
        "internal_datasets_dir": str(root / INTERNAL_DATASETS)
        if any(name.startswith(f"{INTERNAL_DATASETS}/") for name in links)
        else "",
        "modules": {},
    }
    for module, entry in sorted((outputs.get("modules") or {}).items()):
        folder = module_view_name(module)
        internal = f"{INTERNAL_DATASETS}/{module}"
        views = {view: path_of(f"{folder}/{view}") for view in MODULE_VIEWS}
        fields["modules"][module] = {
            "train_path": path_of(internal, "train.jsonl"),
            "val_path": path_of(internal, "val.jsonl"),
            "train_count": int((entry or {}).get("train_records", 0)),
            "val_count": int((entry or {}).get("val_records", 0)),
            "adapter_path": views["adapter"],
            "mntp_dir": views["mntp"],
            "simcse_dir": views["simcse"],
            "gguf_dir": views["gguf"],
            "current_model_dir": views["simcse"] or views["adapter"],
        }
    return fields
