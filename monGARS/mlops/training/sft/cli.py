"""The sft stage's command line: ``python -m monGARS.mlops.training.sft.cli --help``.

Trains one module outside the pipeline and prints the output's metadata as JSON; a user mistake is
one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from monGARS.mlops.training.common.cli import add_config_options, run_training_cli
from monGARS.mlops.training.sft.config import load_sft_config
from monGARS.mlops.training.sft.train import train_sft


def main(argv: list[str] | None = None) -> int:
    """Command line entry: train one module; print the metadata as JSON."""
    parser = argparse.ArgumentParser(prog="python -m monGARS.mlops.training.sft.cli")
    parser.add_argument("--base-model", required=True, help="base model folder")
    parser.add_argument("--datasets", required=True, help="datasets artifact folder")
    parser.add_argument("--module", required=True)
    parser.add_argument("--out", required=True, help="output folder (written atomically)")
    add_config_options(parser, "SFTConfig")
    parser.add_argument("--base-model-name", default=None)
    args = parser.parse_args(argv)
    return run_training_cli(
        args,
        lambda values: train_sft(
            load_sft_config(values),
            args.base_model,
            args.datasets,
            args.module,
            args.out,
            base_model_name=args.base_model_name,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
