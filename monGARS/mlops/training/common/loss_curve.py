"""The loss curve of a training run: a PNG and a self-contained HTML page (``dsl.HTML``).

The Kubeflow UI shows an HTML artifact in a sandboxed frame without access to sibling files, so the
page embeds the PNG as base64 and repeats the numbers in a table.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import atomic_file, write_text


def loss_points(log_history: Sequence[dict[str, Any]]) -> tuple[list[tuple[int, float]], ...]:
    """(step, train loss) and (step, eval loss) pairs from a Trainer's ``log_history``."""
    train, evaluation = [], []
    for entry in log_history:
        step = int(entry.get("step", 0))
        if "loss" in entry and math.isfinite(float(entry["loss"])):
            train.append((step, float(entry["loss"])))
        if "eval_loss" in entry and math.isfinite(float(entry["eval_loss"])):
            evaluation.append((step, float(entry["eval_loss"])))
    return train, evaluation


def write_loss_curve(
    log_history: Sequence[dict[str, Any]], png_path: Path, html_path: Path, title: str
) -> None:
    """Plot train and eval loss against the optimizer step; write the PNG and the HTML page."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    train, evaluation = loss_points(log_history)
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        if train:
            axes.plot(*zip(*train, strict=True), marker=".", label="train loss")
        if evaluation:
            axes.plot(*zip(*evaluation, strict=True), marker="o", label="eval loss (val split)")
        axes.set_xlabel("optimizer step")
        axes.set_ylabel("cross-entropy (assistant tokens)")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        with atomic_file(png_path) as partial:
            figure.savefig(partial, format="png")
    finally:
        plt.close(figure)
    encoded = base64.b64encode(png_path.read_bytes()).decode("ascii")
    eval_by_step = dict(evaluation)
    train_by_step = dict(train)
    rows = "\n".join(
        f"<tr><td>{step}</td><td>{_fmt(train_by_step.get(step))}</td>"
        f"<td>{_fmt(eval_by_step.get(step))}</td></tr>"
        for step in sorted(set(train_by_step) | set(eval_by_step))
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}</style></head>
<body><h2>{html.escape(title)}</h2>
<img alt="loss curve" src="data:image/png;base64,{encoded}">
<table><thead><tr><th>step</th><th>train loss</th><th>eval loss</th></tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""
    write_text(html_path, page)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
