"""The run report: one self-contained HTML page (figures inline) plus flat metrics for KFP.

It reads what each stage left in its artifact folder (``metrics.json``, ``encoder.json``,
``bundle.json``, ``loss_curve.png``), so it needs no extra plumbing when a stage adds a figure.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monGARS.mlops import __version__
from monGARS.mlops.atomic import write_text


@dataclass
class ModuleOutputs:
    """Where one module's artifacts are, and what they report."""

    name: str
    train_records: int = 0
    val_records: int = 0
    sft_adapter: str = ""
    encoder: str = ""
    gguf_bundle: str = ""
    sft_metrics: dict[str, Any] = field(default_factory=dict)
    encoder_metrics: dict[str, Any] = field(default_factory=dict)
    bundle: dict[str, Any] = field(default_factory=dict)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _module_of(folder: Path, marker_files: Sequence[str], fallback: str) -> str:
    for name in marker_files:
        module = _read_json(folder / name).get("module")
        if isinstance(module, str) and module:
            return module
    return fallback


def gather(
    datasets_dir: str | Path,
    sft_dirs: Sequence[str],
    encoder_dirs: Sequence[str],
    gguf_dirs: Sequence[str],
) -> tuple[dict[str, Any], dict[str, ModuleOutputs]]:
    """Read the datasets summary and every module's stage outputs."""
    datasets = Path(datasets_dir)
    module_names = json.loads((datasets / "modules.json").read_text(encoding="utf-8"))
    modules = {
        name: ModuleOutputs(
            name=name,
            train_records=_count_lines(datasets / "modules" / name / "train.jsonl"),
            val_records=_count_lines(datasets / "modules" / name / "val.jsonl"),
        )
        for name in module_names
    }

    def attach(dirs: Sequence[str], markers: Sequence[str], apply: Any) -> None:
        for index, location in enumerate(dirs):
            folder = Path(location)
            fallback = module_names[index] if index < len(module_names) else f"module_{index}"
            name = _module_of(folder, markers, fallback)
            apply(modules.setdefault(name, ModuleOutputs(name=name)), folder)

    def add_sft(module: ModuleOutputs, folder: Path) -> None:
        module.sft_adapter = str(folder)
        module.sft_metrics = _read_json(folder / "metrics.json")

    def add_encoder(module: ModuleOutputs, folder: Path) -> None:
        module.encoder = str(folder)
        module.encoder_metrics = _read_json(folder / "metrics.json")

    def add_bundle(module: ModuleOutputs, folder: Path) -> None:
        module.gguf_bundle = str(folder)
        module.bundle = _read_json(folder / "bundle.json")

    attach(sft_dirs, ["training_config.json", "metrics.json"], add_sft)
    attach(encoder_dirs, ["encoder.json", "metrics.json"], add_encoder)
    attach(gguf_dirs, ["bundle.json"], add_bundle)
    return _read_json(datasets / "summary.json"), modules


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key in sorted(value):
            _flatten(f"{prefix}.{key}" if prefix else str(key), value[key], out)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int | float):
        out[prefix] = value


def figures(modules: dict[str, ModuleOutputs]) -> dict[str, float]:
    """Flat numeric figures for the KFP Metrics artifact, keyed ``<module>.<stage>.<name>``."""
    flat: dict[str, Any] = {}
    for name, module in sorted(modules.items()):
        flat[f"{name}.records.train"] = module.train_records
        flat[f"{name}.records.val"] = module.val_records
        _flatten(f"{name}.sft", module.sft_metrics, flat)
        _flatten(f"{name}.llm2vec", module.encoder_metrics, flat)
        gguf_sizes = {
            f"{entry['role']}.{entry['label']}": entry.get("bytes", 0)
            for entry in bundle_files(module.bundle)
        }
        _flatten(f"{name}.gguf_bytes", gguf_sizes, flat)
    return {key: float(value) for key, value in flat.items()}


def bundle_files(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """Every GGUF file an export bundle lists, tagged with its role (chat or encoder)."""
    files = []
    for role in ("chat", "encoder"):
        entries = (
            bundle.get(role, {}).get("files", {}) if isinstance(bundle.get(role), dict) else {}
        )
        for label, entry in sorted(entries.items()):
            if isinstance(entry, dict):
                files.append({"role": role, "label": label, **entry})
    return files


def _png_tag(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _retrieval_plot(modules: dict[str, ModuleOutputs]) -> str:
    """Bar chart of retrieval MRR before/after llm2vec per module, when the figures exist."""
    rows = []
    for name, module in sorted(modules.items()):
        flat: dict[str, Any] = {}
        _flatten("", module.encoder_metrics, flat)
        before = next((v for k, v in flat.items() if "before" in k and "mrr" in k.lower()), None)
        after = next((v for k, v in flat.items() if "after" in k and "mrr" in k.lower()), None)
        if before is not None and after is not None:
            rows.append((name, before, after))
    if not rows:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 3))
    positions = range(len(rows))
    axis.bar([p - 0.2 for p in positions], [r[1] for r in rows], width=0.4, label="before")
    axis.bar([p + 0.2 for p in positions], [r[2] for r in rows], width=0.4, label="after")
    axis.set_xticks(list(positions), [r[0] for r in rows])
    axis.set_ylabel("MRR")
    axis.set_title("Retrieval before / after llm2vec")
    axis.legend()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return _png_tag(buffer.getvalue(), "retrieval before and after llm2vec")


def _table(rows: dict[str, Any]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    cells = "".join(
        f"<tr><td>{html.escape(str(key))}</td><td>{html.escape(_fmt(value))}</td></tr>"
        for key, value in rows.items()
    )
    return f"<table>{cells}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_html(run_name: str, summary: dict[str, Any], modules: dict[str, ModuleOutputs]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>monGARS run {html.escape(run_name)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:70em}"
        "table{border-collapse:collapse;margin:.5em 0}td{border:1px solid #ccc;padding:2px 8px}"
        "img{max-width:100%}</style></head><body>",
        f"<h1>monGARS run <code>{html.escape(run_name)}</code></h1>",
        f"<p>monGARS mlops {html.escape(__version__)} — {len(modules)} module(s)</p>",
        "<h2>Datasets</h2>",
    ]
    dataset_figures: dict[str, Any] = {}
    _flatten("", {k: v for k, v in summary.items() if k in ("outputs", "totals")}, dataset_figures)
    parts.append(_table(dataset_figures))
    parts.append(_retrieval_plot(modules))
    for name, module in sorted(modules.items()):
        parts.append(f"<h2>Module <code>{html.escape(name)}</code></h2>")
        parts.append(
            _table({"train records": module.train_records, "val records": module.val_records})
        )
        for title, metrics in (("SFT", module.sft_metrics), ("llm2vec", module.encoder_metrics)):
            flat: dict[str, Any] = {}
            _flatten("", metrics, flat)
            if flat:
                parts.append(f"<h3>{title}</h3>{_table(flat)}")
        curve = Path(module.sft_adapter) / "loss_curve.png" if module.sft_adapter else None
        if curve is not None and curve.is_file():
            parts.append(_png_tag(curve.read_bytes(), f"{name} SFT loss curve"))
        files = bundle_files(module.bundle)
        if files:
            parts.append("<h3>GGUF files</h3>")
            parts.append(
                "<table><tr><td>file</td><td>role</td><td>type</td><td>MB</td><td>verified</td></tr>"
                + "".join(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2f}</td><td>{}</td></tr>".format(
                        html.escape(str(entry.get("path", ""))),
                        html.escape(entry["role"]),
                        html.escape(entry["label"]),
                        float(entry.get("bytes", 0)) / 1e6,
                        html.escape(str(entry.get("verified", ""))),
                    )
                    for entry in files
                )
                + "</table>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    run_name: str,
    datasets_dir: str | Path,
    sft_dirs: Sequence[str],
    encoder_dirs: Sequence[str],
    gguf_dirs: Sequence[str],
    html_path: str | Path,
) -> tuple[str, dict[str, float]]:
    """Write the HTML report; return (JSON summary of artifact locations, flat figures)."""
    summary, modules = gather(datasets_dir, sft_dirs, encoder_dirs, gguf_dirs)
    write_text(html_path, render_html(run_name, summary, modules))
    locations = {
        "datasets": str(datasets_dir),
        "report": str(html_path),
        "modules": {
            name: {
                "train_records": module.train_records,
                "val_records": module.val_records,
                "sft_adapter": module.sft_adapter,
                "encoder": module.encoder,
                "gguf_bundle": module.gguf_bundle,
                "gguf_files": [
                    str(Path(module.gguf_bundle) / str(entry.get("path", "")))
                    for entry in bundle_files(module.bundle)
                ],
            }
            for name, module in sorted(modules.items())
        },
    }
    return json.dumps(locations, sort_keys=True), figures(modules)
