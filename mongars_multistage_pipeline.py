#!/usr/bin/env python3
"""The runbook's entry point, kept for its users: ``python mongars_multistage_pipeline.py -h``."""

import sys

from monGARS.cli import runbook_main

if __name__ == "__main__":
    sys.exit(runbook_main())
