"""The raft stage's command line: ``python -m monGARS.mlops.training.raft.cli --help``.

Trains one module outside the pipeline and prints the output's metadata as JSON; a user mistake is
one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from monGARS.mlops.training.common.cli import add_config_options, run_training_cli
from monGARS.mlops.training.raft.config import load_raft_config
from monGARS.mlops.training.raft.train import train_raft


def main(argv: list[str] | None = None) -> int:
    """Command line entry: RAFT-train one module; print the metadata as JSON."""
    parser = argparse.ArgumentParser(prog="python -m monGARS.mlops.training.raft.cli")
    parser.add_argument("--base-model", required=True, help="base model folder")
    parser.add_argument("--sft", required=True, help="the module's sft output folder")
    parser.add_argument("--encoder", default=None, help="llm2vec output folder (hard negatives)")
    parser.add_argument("--datasets", required=True, help="datasets artifact folder")
    parser.add_argument("--module", required=True)
    parser.add_argument("--out", required=True, help="output folder (written atomically)")
    add_config_options(parser, "RaftConfig")
    args = parser.parse_args(argv)
    return run_training_cli(
        args,
        lambda values: train_raft(
            load_raft_config(values),
            args.base_model,
            args.sft,
            args.encoder,
            args.datasets,
            args.module,
            args.out,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
