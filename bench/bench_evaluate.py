"""Benchmark the evaluate stage on the embedded tiny model: seconds per step, per item count.

Builds the tiny model and a small datasets folder, trains a short SFT adapter, merges and exports
it (chat Q8_0), then runs ``evaluate_module`` at a few ``max_examples`` settings, each from a cold
base-GGUF cache and then a warm one, and prints the seconds of every step (items, tuned GGUF,
base conversion, base GGUF, HF) as ``evaluation.json`` records them. What the tiny default adds
to a run is the ``max_examples=6`` row (the tiny preset).

    python bench/bench_evaluate.py              # 6, 16, 32 items
    python bench/bench_evaluate.py --items 6    # one setting
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[6, 16, 32])
    parser.add_argument("--answer-tokens", type=int, default=24)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from sft_data import MODULE, make_datasets

    from monGARS.mlops.evaluate.run import evaluate_module
    from monGARS.mlops.export.export import export_module
    from monGARS.mlops.modeling import merge_adapter_to_folder
    from monGARS.mlops.tiny_model import build_tiny_model, sample_corpus_dir
    from monGARS.mlops.training.sft.config import TINY_SFT_OVERRIDES
    from monGARS.mlops.training.sft.train import train_sft

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        base = build_tiny_model(root / "tiny")
        data = make_datasets(root / "data", sample_corpus_dir(), train=24, val=max(args.items))
        train_sft(
            {**TINY_SFT_OVERRIDES, "checkpoint_root": "", "max_steps": 10},
            base,
            data,
            MODULE,
            root / "sft",
        )
        merge_adapter_to_folder(base, root / "sft", root / "merged")
        export_module(
            {"quant_types": ["q8_0"], "n_ctx": 512},
            root / "merged",
            None,
            None,
            MODULE,
            root / "gguf",
        )
        print(f"{'items':>5} {'cache':>5} " + " ".join(f"{k:>12}" for k in STEPS) + f" {'wall':>8}")
        for count in args.items:
            for cache in ("cold", "warm"):
                os.environ["MONGARS_CACHE_DIR"] = str(root / f"cache-{count}")
                (root / f"cache-{count}").mkdir(exist_ok=True)
                out = root / f"eval-{count}-{cache}"
                started = time.monotonic()
                evaluate_module(
                    {"max_examples": count, "max_new_tokens": args.answer_tokens},
                    root / "gguf",
                    root / "merged",
                    base,
                    data,
                    MODULE,
                    out,
                )
                wall = time.monotonic() - started
                seconds = json.loads((out / "evaluation.json").read_text())["seconds"]
                cells = " ".join(f"{seconds.get(k, 0.0):>12.2f}" for k in STEPS)
                print(f"{count:>5} {cache:>5} {cells} {wall:>8.2f}")


STEPS = ("items", "tuned_gguf", "base_convert", "base_gguf", "hf", "total")

if __name__ == "__main__":
    main()
