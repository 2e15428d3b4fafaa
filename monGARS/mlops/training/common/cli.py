"""What the training stages' command lines share: ``--config``/``--set``, errors, JSON out."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from monGARS.mlops.configs import config_values_from_cli
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.common.distributed import current_world


def add_config_options(parser: argparse.ArgumentParser, config_name: str) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` for the stage's config fields."""
    parser.add_argument("--config", help=f"YAML/JSON file of {config_name} fields")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")


def run_training_cli(
    args: argparse.Namespace, train: Callable[[dict[str, Any]], dict[str, Any]]
) -> int:
    """Run ``train(config values)``, print its metadata as JSON; a user mistake is one
    ``error:`` line and exit status 2."""
    try:
        metadata = train(config_values_from_cli(args.config, args.set))
    except MongarsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if current_world().is_main:  # under an outside torchrun, one line for the whole run
        print(json.dumps(metadata, sort_keys=True))
    return 0
