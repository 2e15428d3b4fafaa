"""``mongars champion list|show|rollback``: read the champion registry and restore an earlier one.

The registry is the one the promote step writes (``monGARS/mlops/evaluate/registry.py``): give it
with ``--registry`` (``gs://bucket/prefix`` or a folder), ``$MONGARS_CHAMPION_REGISTRY``, or let it
default to ``<runs-root>/champions``, where local runs keep theirs.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

REGISTRY_ENV = "MONGARS_CHAMPION_REGISTRY"


def _registry(args: argparse.Namespace) -> Any:
    from monGARS.deploy.local_run import CHAMPIONS_DIRNAME
    from monGARS.mlops.errors import MongarsError
    from monGARS.mlops.evaluate.registry import ChampionRegistry

    uri = (
        args.registry
        or os.environ.get(REGISTRY_ENV)
        or str(Path(args.runs_root) / CHAMPIONS_DIRNAME)
    )
    registry = ChampionRegistry(uri)
    if not registry.gcs and not Path(registry.root).is_dir():
        raise MongarsError(
            f"champion registry {uri}: no such folder; give --registry (gs://... or a folder) "
            f"or set {REGISTRY_ENV}"
        )
    return registry


def _figure(summary: dict[str, Any], key: str, digits: int = 3) -> str:
    value = summary.get(key)
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "–"


def list_command(args: argparse.Namespace) -> int:
    registry = _registry(args)
    modules = registry.modules()
    if not modules:
        print(f"champion registry {registry.uri}: no champion yet")
        return 0
    print(f"champion registry {registry.uri}")
    for module in modules:
        pointer, manifest = registry.champion(module)
        summary = manifest.get("summary") or {}
        lineage = manifest.get("lineage") or {}
        versions = registry.versions(module)
        run = lineage.get("local_run_id") or lineage.get("job_name") or lineage.get("run_id") or "?"
        print(
            f"  {module:<16} {pointer.version}  ({pointer.data.get('reason')} "
            f"{pointer.data.get('switched_at')}, run {run})  "
            f"NLL {_figure(summary, 'assistant_nll')}  F1 {_figure(summary, 'token_f1')}  "
            f"French {_figure(summary, 'french_share', 2)}  "
            f"{len(versions)} version{'s' if len(versions) != 1 else ''}, "
            f"{len(pointer.data.get('history') or [])} earlier champion(s)"
        )
    return 0


def show_command(args: argparse.Namespace) -> int:
    from monGARS.mlops.errors import MongarsError

    registry = _registry(args)
    found = registry.champion(args.module)
    if found is None:
        raise MongarsError(
            f"champion registry {registry.uri}: {args.module} has no champion; "
            f"modules with one: {', '.join(registry.modules()) or 'none'}"
        )
    pointer, manifest = found
    print(json.dumps({"pointer": pointer.data, "manifest": manifest}, indent=2, sort_keys=True))
    return 0


def rollback_command(args: argparse.Namespace) -> int:
    registry = _registry(args)
    before = registry.pointer(args.module)
    data = registry.rollback(args.module, args.to, run_id="mongars champion rollback")
    was = before.version if before else "none"
    print(f"{args.module}: champion is now {data['version']} (was {was})")
    return 0


def add_champion_subcommand(commands: Any) -> None:
    """Register ``champion`` with its ``list``, ``show`` and ``rollback`` actions."""
    champion = commands.add_parser("champion", help="list, show or roll back promoted models")
    actions = champion.add_subparsers(dest="action", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--registry", default="", help=f"gs://... or a folder (${REGISTRY_ENV})"
        )
        parser.add_argument(
            "--runs-root", default="runs", help="local runs' folder (default: runs)"
        )

    listing = actions.add_parser("list", help="every module's champion and its figures")
    common(listing)
    listing.set_defaults(handler=list_command)
    show = actions.add_parser("show", help="one champion: pointer, files, sha256s, lineage")
    show.add_argument("module")
    common(show)
    show.set_defaults(handler=show_command)
    rollback = actions.add_parser("rollback", help="make the previous champion current again")
    rollback.add_argument("module")
    rollback.add_argument("--to", help="a version to restore (default: the previous champion)")
    common(rollback)
    rollback.set_defaults(handler=rollback_command)
