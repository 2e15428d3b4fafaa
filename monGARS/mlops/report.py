"""The run report: one self-contained HTML page (charts inline as SVG) plus flat metrics for KFP.

It reads each stage's small *stage summary* (monGARS.mlops.summaries: the datasets'
``summary.json``, ``metrics.json`` of sft and llm2vec, ``bundle.json``/``verification.json`` of
export, with the artifact's URI and file names), never the stages' large artifacts, so on a
cluster the report pod downloads kilobytes, and its links name the object store (``gs://``,
``s3://``, ``minio://``), not paths inside its own pod. The page has an overview table (one row per
module), the datasets, then one section per module: SFT (figures and loss curve), llm2vec
(losses per phase and retrieval before/after) and the GGUF files with their llama.cpp checks,
each with links to the files.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monGARS.mlops import __version__
from monGARS.mlops.atomic import write_text


@dataclass
class ModuleOutputs:
    """Where one module's artifacts are (URIs), what they hold, and what they report."""

    name: str
    train_records: int = 0
    val_records: int = 0
    sft_adapter: str = ""
    encoder: str = ""
    gguf_bundle: str = ""
    sft_metrics: dict[str, Any] = field(default_factory=dict)
    encoder_metrics: dict[str, Any] = field(default_factory=dict)
    bundle: dict[str, Any] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)
    # Top-level file names of each stage's artifact (links are made only to files that exist).
    files: dict[str, list[str]] = field(default_factory=dict)
    # Every summary of this module, by stage (stages the report has no section for yet included).
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    promotion: dict[str, Any] = field(default_factory=dict)


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _apply_summary(module: ModuleOutputs, summary: dict[str, Any]) -> None:
    stage = summary["stage"]
    documents = _as_dict(summary.get("documents"))
    uri = str(summary.get("uri") or "")
    module.summaries[stage] = summary
    module.files[stage] = [str(name) for name in summary.get("files") or []]
    if stage == "sft":
        module.sft_adapter = uri
        module.sft_metrics = _as_dict(documents.get("metrics.json"))
    elif stage == "llm2vec":
        module.encoder = uri
        module.encoder_metrics = _as_dict(documents.get("metrics.json"))
    elif stage == "export":
        module.gguf_bundle = uri
        module.bundle = _as_dict(documents.get("bundle.json"))
        module.verification = _as_dict(documents.get("verification.json"))
    elif stage == "evaluate":
        module.evaluation = _as_dict(documents.get("evaluation.json"))


def gather(
    datasets_summary_path: str | Path,
    summary_paths: Sequence[str | Path],
    promotion: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, ModuleOutputs], str]:
    """The datasets summary and every stage summary: (datasets summary, modules, datasets URI).

    ``promotion`` is the promote stage's record: each module gets the gate's decision.
    """
    from monGARS.mlops.summaries import read_summaries

    datasets = next(iter(read_summaries([datasets_summary_path])), {})
    documents = _as_dict(datasets.get("documents"))
    summary = _as_dict(documents.get("summary.json"))
    module_names = documents.get("modules.json") or []
    counts = _as_dict(summary.get("modules"))
    modules = {
        name: ModuleOutputs(
            name=name,
            train_records=int(_as_dict(counts.get(name)).get("train") or 0),
            val_records=int(_as_dict(counts.get(name)).get("val") or 0),
        )
        for name in module_names
    }
    for stage_summary in read_summaries(summary_paths):
        name = str(stage_summary.get("module") or "")
        if name:
            _apply_summary(modules.setdefault(name, ModuleOutputs(name=name)), stage_summary)
    for name, result in _as_dict(_as_dict(promotion).get("modules")).items():
        modules.setdefault(name, ModuleOutputs(name=name)).promotion = _as_dict(result)
    return summary, modules, str(datasets.get("uri") or "")


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
        _flatten(f"{name}.evaluation", module.evaluation.get("summary") or {}, flat)
        if module.promotion:
            flat[f"{name}.promoted"] = int(bool(module.promotion.get("promoted")))
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


# -- formatting ------------------------------------------------------------------------------

_esc = html.escape


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(float(value)) else float(value)


def _fmt(value: Any, digits: int = 3) -> str:
    number = _num(value)
    if number is None:
        return "–" if value in (None, "") else _esc(str(value))
    if number == int(number) and abs(number) < 1e12:
        return f"{int(number):,}".replace(",", "\u202f")
    return f"{number:.{digits}f}" if abs(number) < 1000 else f"{number:,.0f}"


def _size(num_bytes: Any) -> str:
    number = _num(num_bytes) or 0.0
    for unit in ("B", "KB", "MB", "GB"):
        if number < 1024 or unit == "GB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    return f"{number:.1f} GB"  # pragma: no cover


def _change(before: Any, after: Any, *, lower_is_better: bool, digits: int = 3) -> str:
    """``before → after`` with the change coloured: green when it improved."""
    first, last = _num(before), _num(after)
    if first is None or last is None:
        return "–"
    improved = last < first if lower_is_better else last > first
    same = abs(last - first) < 10 ** (-digits)
    css = "same" if same else ("good" if improved else "bad")
    return (
        f"<span class='change'>{_fmt(first, digits)} → <span class='{css}'>{_fmt(last, digits)}"
        f"</span> <span class='delta {css}'>({last - first:+.{digits}f})</span></span>"
    )


def _delta(before: Any, after: Any, *, lower_is_better: bool, digits: int = 3) -> str:
    """Only the coloured difference ``after - before`` (green when it improved)."""
    first, last = _num(before), _num(after)
    if first is None or last is None:
        return "–"
    improved = last < first if lower_is_better else last > first
    css = "same" if abs(last - first) < 10 ** (-digits) else ("good" if improved else "bad")
    return f"<span class='{css}'>{last - first:+.{digits}f}</span>"


def browser_href(uri: str) -> str | None:
    """Where a browser can open an artifact URI: a local path as ``file://``, ``gs://`` through the
    Cloud Console's authenticated download host; None for ``s3://``/``minio://`` (their endpoint
    is cluster-specific: the report shows the URI to copy instead)."""
    if uri.startswith("gs://"):
        return "https://storage.cloud.google.com/" + uri[len("gs://") :]
    if "://" in uri:
        return None
    location = Path(uri)
    return location.as_uri() if location.is_absolute() else location.as_posix()


def _link(uri: str, text: str | None = None) -> str:
    """A link to an artifact file or folder by its URI; the full URI shows on hover."""
    label = text or "/".join(uri.rstrip("/").split("/")[-3:])
    href = browser_href(uri)
    if href is None:
        return f"<code title='{_esc(uri)}'>{_esc(label)}</code>"
    return f"<a href='{_esc(href)}' title='{_esc(uri)}'><code>{_esc(label)}</code></a>"


def _file_links(base_uri: str, present: Sequence[str], names: Sequence[str]) -> str:
    """'Files: a · b' for the names the artifact holds, and its URI to copy."""
    from monGARS.mlops.summaries import join_uri

    links = [_link(join_uri(base_uri, name), name) for name in names if name in present]
    return (
        "<p class='links'>Files: "
        + " · ".join(links)
        + (" · " if links else "")
        + f"artifact <code class='uri'>{_esc(base_uri)}</code></p>"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A table of already-escaped cells; ``align`` has one letter per column, ``r`` for numbers.

    Columns without a letter are left-aligned.
    """
    if not rows:
        return "<p class='muted'>nothing recorded</p>"

    def css(index: int) -> str:
        return " class='num'" if align[index : index + 1] == "r" else ""

    head = "".join(f"<th{css(i)}>{_esc(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{css(i)}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _facts(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column label/value list (values already escaped)."""
    items = "".join(f"<dt>{_esc(label)}</dt><dd>{value}</dd>" for label, value in rows if value)
    return f"<dl class='facts'>{items}</dl>"


# -- charts ----------------------------------------------------------------------------------

_COLOURS = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2")


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks, value = [], start
    while value <= high + step * 1e-6:
        if value >= low - step * 1e-6:
            ticks.append(round(value, 10))
        value += step
    return ticks


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 260,
) -> str:
    """An inline SVG line chart (one polyline per series, axes with ticks, a legend)."""
    points = [(x, y) for _, data in series for x, y in data]
    if not points:
        return ""
    left, right, top, bottom = 58, 12, 28, 42
    x_low, x_high = min(p[0] for p in points), max(p[0] for p in points)
    y_low, y_high = min(p[1] for p in points), max(p[1] for p in points)
    if x_high == x_low:
        x_high = x_low + 1
    pad = (y_high - y_low) * 0.08 or abs(y_high) * 0.1 or 1.0
    y_low, y_high = y_low - pad, y_high + pad
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * plot_w

    def sy(y: float) -> float:
        return top + (y_high - y) / (y_high - y_low) * plot_h

    parts = [
        f"<svg class='chart' viewBox='0 0 {width} {height}' width='{width}' height='{height}' "
        f"role='img' aria-label='{_esc(title)}'>",
        f"<text x='{left}' y='16' class='chart-title'>{_esc(title)}</text>",
        f"<rect x='{left}' y='{top}' width='{plot_w}' height='{plot_h}' class='plot'/>",
    ]
    for tick in _ticks(y_low, y_high):
        y = sy(tick)
        parts.append(
            f"<line x1='{left}' x2='{left + plot_w}' y1='{y:.1f}' y2='{y:.1f}' class='grid'/>"
        )
        parts.append(
            f"<text x='{left - 6}' y='{y + 4:.1f}' class='tick' text-anchor='end'>{tick:g}</text>"
        )
    for tick in _ticks(x_low, x_high, 6):
        x = sx(tick)
        parts.append(
            f"<text x='{x:.1f}' y='{top + plot_h + 16}' class='tick' text-anchor='middle'>"
            f"{tick:g}</text>"
        )
    parts.append(
        f"<text x='{left + plot_w / 2:.0f}' y='{height - 6}' class='axis' text-anchor='middle'>"
        f"{_esc(x_label)}</text>"
    )
    parts.append(
        f"<text x='14' y='{top + plot_h / 2:.0f}' class='axis' text-anchor='middle' "
        f"transform='rotate(-90 14 {top + plot_h / 2:.0f})'>{_esc(y_label)}</text>"
    )
    legend_widths = [7 * len(name) + 26 for name, _ in series]
    legend_x = left + plot_w - sum(legend_widths)
    for index, (name, data) in enumerate(series):
        colour = _COLOURS[index % len(_COLOURS)]
        if len(data) == 1:
            x, y = data[0]
            parts.append(f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='3' fill='{colour}'/>")
        else:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in data)
            parts.append(
                f"<polyline points='{coords}' fill='none' stroke='{colour}' stroke-width='2'/>"
            )
        parts.append(
            f"<rect x='{legend_x}' y='10' width='14' height='3' fill='{colour}'/>"
            f"<text x='{legend_x + 18}' y='16' class='legend'>{_esc(name)}</text>"
        )
        legend_x += legend_widths[index]
    parts.append("</svg>")
    return "".join(parts)


def _history(entries: Any, key: str) -> list[tuple[float, float]]:
    points = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and _num(entry.get(key)) is not None:
            points.append((float(entry.get("step", len(points))), float(entry[key])))
    return points


# -- sections --------------------------------------------------------------------------------

_KIND_LABELS = {
    "instruction": "Instructions",
    "reasoning": "Reasoning (question, steps, answer)",
    "conversation": "Conversations",
    "retrieval": "Retrieval (query, passages)",
}


def _datasets_section(summary: dict[str, Any], modules: dict[str, ModuleOutputs]) -> str:
    outputs = summary.get("outputs") or {}
    totals = summary.get("totals") or {}
    parts = ["<section id='datasets'><h2>Datasets</h2>"]
    parts.append(
        _facts(
            [
                ("Rows read", _fmt(totals.get("rows_read"))),
                ("Records kept", _fmt(totals.get("records_kept"))),
                ("Records dropped", _fmt(totals.get("records_dropped"))),
                (
                    "Languages",
                    _esc(", ".join((summary.get("config") or {}).get("languages", []) or [])),
                ),
            ]
        )
    )
    rows = [
        [
            _esc(_KIND_LABELS.get(kind, kind)),
            _fmt((counts or {}).get("train")),
            _fmt((counts or {}).get("val")),
        ]
        for kind, counts in sorted(outputs.items())
    ]
    parts.append("<h3>French corpora (records)</h3>")
    parts.append(_table(["kind", "train", "validation"], rows, "lrr"))
    sources = summary.get("sources") or []
    if sources:
        rows = []
        for source in sources:
            dropped = source.get("dropped") or {}
            reasons = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(dropped.items()))
            rows.append(
                [
                    f"<code>{_esc(str(source.get('name', '')))}</code>",
                    _esc(str(source.get("kind", ""))),
                    _fmt(source.get("read")),
                    _fmt(source.get("kept")),
                    _esc(reasons or "–")
                    + (
                        f" <span class='bad'>{_esc(str(source['error']))}</span>"
                        if source.get("error")
                        else ""
                    ),
                ]
            )
        parts.append("<h3>Sources</h3>")
        parts.append(
            _table(["source", "kind", "rows read", "kept", "dropped (by reason)"], rows, "llrr")
        )
    code = summary.get("code") or {}
    module_summary = summary.get("modules") or {}
    rows = []
    for name in sorted(set(module_summary) | set(modules)):
        info = module_summary.get(name) or {}
        module = modules.get(name)
        train = module.train_records if module else info.get("train")
        val = module.val_records if module else info.get("val")
        status = str(info.get("status", "included"))
        rows.append(
            [
                f"<a href='#module-{_esc(name)}'><code>{_esc(name)}</code></a>"
                if module
                else f"<code>{_esc(name)}</code>",
                _fmt(train),
                _fmt(val),
                _esc(status.replace("_", " ")),
            ]
        )
    if rows or code:
        roots = ", ".join(str(root) for root in code.get("roots", []) or [])
        facts = code.get("facts") or {}
        parts.append("<h3>Per-module datasets, mined from code</h3>")
        parts.append(
            _facts(
                [
                    ("Source tree", f"<code>{_esc(roots)}</code>" if roots else ""),
                    ("Python files", _fmt(code.get("files"))),
                    (
                        "Facts found",
                        _esc(
                            " · ".join(
                                f"{k.replace('_', ' ')} {v}" for k, v in sorted(facts.items())
                            )
                        ),
                    ),
                    ("Records", _fmt(code.get("records"))),
                ]
            )
        )
        parts.append(
            _table(["module", "train records", "validation records", "status"], rows, "lrr")
        )
    parts.append("</section>")
    return "".join(parts)


def _training_records(metrics: dict[str, Any]) -> str:
    total = _fmt(metrics.get("train_records"))
    mined, french = metrics.get("module_train_records"), metrics.get("french_train_records")
    if _num(mined) is None or _num(french) is None:
        return total
    return f"{total} <span class='muted'>({_fmt(mined)} from code, {_fmt(french)} French)</span>"


def _sft_section(module: ModuleOutputs) -> str:
    metrics = module.sft_metrics
    if not metrics and not module.sft_adapter:
        return ""
    parts = ["<h3>Supervised fine-tuning (LoRA)</h3>"]
    parts.append(
        _facts(
            [
                ("Training steps", _fmt(metrics.get("steps"))),
                (
                    "Train loss (first → last step)",
                    _change(
                        metrics.get("train_loss_first"),
                        metrics.get("train_loss_last"),
                        lower_is_better=True,
                    ),
                ),
                (
                    "Validation loss (before → after)",
                    _change(
                        metrics.get("eval_loss_before"),
                        metrics.get("eval_loss_after"),
                        lower_is_better=True,
                    ),
                ),
                ("Training records", _training_records(metrics)),
                ("Validation records", _fmt(metrics.get("val_records"))),
                ("Tokens trained", _fmt(metrics.get("trained_tokens"))),
                ("Throughput (tokens/s)", _fmt(metrics.get("tokens_per_second"), 1)),
                ("Training time (s)", _fmt(metrics.get("train_seconds"), 1)),
                ("Peak memory (MB)", _fmt(metrics.get("peak_memory_mb"), 1)),
            ]
        )
    )
    chart = line_chart(
        [
            (name, points)
            for name, points in (
                ("train loss", _history(metrics.get("loss_history"), "loss")),
                ("validation loss", _history(metrics.get("eval_history"), "eval_loss")),
            )
            if points
        ],
        title=f"SFT loss — {module.name}",
        x_label="step",
        y_label="loss (cross-entropy)",
    )
    if chart:
        parts.append(f"<figure>{chart}</figure>")
    if module.sft_adapter:
        parts.append(
            _file_links(
                module.sft_adapter,
                module.files.get("sft", []),
                ("adapter", "metrics.json", "training_config.json", "loss_curve.png"),
            )
        )
    return "".join(parts)


_SPLIT_LABELS = {"val": "validation", "train": "training"}
_PHASE_LABELS = {"mntp": "MNTP", "simcse": "SimCSE", "supervised": "supervised contrastive"}
_RETRIEVAL_METRICS = (("mrr", "MRR"), ("recall_at_1", "recall@1"), ("recall_at_10", "recall@10"))


def _llm2vec_section(module: ModuleOutputs) -> str:
    metrics = module.encoder_metrics
    if not metrics and not module.encoder:
        return ""
    parts = ["<h3>Text encoder (llm2vec: MNTP, then contrastive)</h3>"]
    phases = [p for p in ("mntp", "simcse", "supervised") if isinstance(metrics.get(p), dict)]
    rows = [
        [
            _esc(_PHASE_LABELS[p]),
            _fmt(metrics[p].get("steps")),
            _change(
                metrics[p].get("loss_first"), metrics[p].get("loss_last"), lower_is_better=True
            ),
        ]
        for p in phases
    ]
    parts.append(_table(["phase", "steps", "loss (first → last step)"], rows, "lrr"))
    chart = line_chart(
        [
            (p, [(float(i + 1), float(v)) for i, v in enumerate(metrics[p].get("losses", []))])
            for p in phases
            if metrics[p].get("losses")
        ],
        title=f"llm2vec losses — {module.name}",
        x_label="step (within each phase)",
        y_label="loss",
    )
    if chart:
        parts.append(f"<figure>{chart}</figure>")
    retrieval = metrics.get("retrieval") if isinstance(metrics.get("retrieval"), dict) else {}
    if isinstance(retrieval.get("before"), dict) and isinstance(retrieval.get("after"), dict):
        columns = ["before"] + [k for k in retrieval if k.startswith("after_")]
        header = [
            "metric",
            "before llm2vec",
            *[f"after {_PHASE_LABELS.get(c[6:], c[6:])}" for c in columns[1:]],
            "change",
        ]
        rows = []
        for key, label in _RETRIEVAL_METRICS:
            values = [retrieval.get(c, {}).get(key) for c in columns]
            rows.append(
                [
                    _esc(label),
                    *[_fmt(v) for v in values],
                    _delta(values[0], retrieval["after"].get(key), lower_is_better=False),
                ]
            )
        note = retrieval.get("note") or ""
        parts.append(
            f"<h4>Retrieval: {_fmt(retrieval.get('queries'))} held-out queries against "
            f"{_fmt(retrieval.get('passages'))} passages "
            f"({_esc(_SPLIT_LABELS.get(str(retrieval.get('split')), str(retrieval.get('split'))))} "
            "split)</h4>"
        )
        parts.append(_table(header, rows, "l" + "r" * (len(header) - 1)))
        if note:
            parts.append(f"<p class='muted'>{_esc(str(note))}</p>")
    if module.encoder:
        parts.append(
            _file_links(
                module.encoder,
                module.files.get("llm2vec", []),
                ("encoder", "encoder.json", "metrics.json", "training_config.json"),
            )
        )
    return "".join(parts)


def _gguf_section(module: ModuleOutputs) -> str:
    files = bundle_files(module.bundle)
    if not files:
        return ""
    checks = (
        module.verification.get("files")
        if isinstance(module.verification.get("files"), dict)
        else {}
    )
    from monGARS.mlops.summaries import join_uri

    folder = module.gguf_bundle
    rows = []
    for entry in files:
        path = str(entry.get("path", ""))
        check = checks.get(path, {}) if isinstance(checks.get(path), dict) else {}
        verified = entry.get("verified")
        status = (
            "<span class='good'>✓ passed</span>"
            if verified is True
            else ("<span class='bad'>✗ failed</span>" if verified is False else "not checked")
        )
        if entry["role"] == "chat":
            parity = (
                f"logits: min cosine {_fmt(check.get('logits_min_cosine'), 4)}, "
                f"same top token {_fmt(_percent(check.get('top1_agreement')), 1)} %"
                if check
                else "–"
            )
        else:
            parity = (
                f"embeddings: min cosine {_fmt(check.get('embedding_min_cosine'), 4)}"
                if check
                else "–"
            )
        bound = (check.get("bounds") or {}).get("min_cosine") if check else None
        default = (module.bundle.get(entry["role"]) or {}).get("default") == entry["label"]
        rows.append(
            [
                _link(join_uri(folder, path), path) if folder else f"<code>{_esc(path)}</code>",
                _esc(entry["role"]) + (" <span class='muted'>(default)</span>" if default else ""),
                _esc(str(entry["label"])),
                _size(entry.get("bytes")),
                status,
                _esc(parity) if parity == "–" else parity,
                _fmt(bound, 4) if bound is not None else "–",
            ]
        )
    parts = ["<h3>GGUF files, checked in llama.cpp against the Hugging Face model</h3>"]
    parts.append(
        _table(
            [
                "file",
                "role",
                "quant type",
                "size",
                "llama.cpp check",
                "parity with the HF model",
                "min cosine allowed",
            ],
            rows,
            "lllrllr",
        )
    )
    if folder:
        parts.append(
            _file_links(
                folder,
                module.files.get("export", []),
                ("Modelfile", "bundle.json", "verification.json"),
            )
        )
    return "".join(parts)


def _percent(value: Any) -> float | None:
    number = _num(value)
    return None if number is None else number * 100


def _overview(modules: dict[str, ModuleOutputs]) -> str:
    rows = []
    for name, module in sorted(modules.items()):
        sft, enc = module.sft_metrics, module.encoder_metrics
        retrieval = enc.get("retrieval") if isinstance(enc.get("retrieval"), dict) else {}
        files = bundle_files(module.bundle)
        verified = [entry.get("verified") for entry in files]
        gguf = (
            f"{len(files)} files, {_size(sum(_num(e.get('bytes')) or 0 for e in files))}, "
            + (
                "<span class='good'>all checks passed</span>"
                if all(v is True for v in verified)
                else "<span class='bad'>check failed</span>"
            )
            if files
            else "–"
        )
        rows.append(
            [
                f"<a href='#module-{_esc(name)}'><code>{_esc(name)}</code></a>",
                f"{_fmt(module.train_records)} / {_fmt(module.val_records)}",
                _change(
                    sft.get("train_loss_first"), sft.get("train_loss_last"), lower_is_better=True
                ),
                _change(
                    sft.get("eval_loss_before"), sft.get("eval_loss_after"), lower_is_better=True
                ),
                _change(
                    (retrieval.get("before") or {}).get("mrr"),
                    (retrieval.get("after") or {}).get("mrr"),
                    lower_is_better=False,
                ),
                gguf,
            ]
        )
    return _table(
        [
            "module",
            "records (train / validation)",
            "SFT train loss",
            "SFT validation loss",
            "retrieval MRR (before → after llm2vec)",
            "GGUF",
        ],
        rows,
        "lrrrr",
    )


_CSS = """
:root{--fg:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f9fafb;--good:#047857;--bad:#b91c1c}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
margin:0;background:var(--bg)}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:0 0 4px}h2{font-size:21px;margin:36px 0 12px;padding-bottom:6px;
border-bottom:2px solid var(--line)}h3{font-size:17px;margin:24px 0 8px}h4{font-size:15px;
margin:16px 0 6px;font-weight:600}
.sub,.muted{color:var(--muted)}nav{margin:12px 0 0;font-size:14px}nav a{margin-right:14px}
a{color:#1d4ed8;text-decoration:none}a:hover{text-decoration:underline}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
table{border-collapse:collapse;margin:6px 0 10px;font-size:14px;width:auto;min-width:50%}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#f3f4f6;font-weight:600;font-size:13px}tbody tr:nth-child(even){background:#fafafa}
.num{text-align:right;font-variant-numeric:tabular-nums}
.good{color:var(--good)}.bad{color:var(--bad)}.same{color:var(--fg)}
.delta{font-size:12px}.change,td.num,td a code{white-space:nowrap}h1 code,h2 code{font-size:inherit}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 18px;margin:6px 0 12px;
font-size:14px}dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0;font-variant-numeric:tabular-nums}
figure{margin:8px 0 12px}svg.chart{max-width:100%;height:auto;font-family:system-ui,sans-serif}
svg .plot{fill:#fff;stroke:#d1d5db}svg .grid{stroke:#eef0f3}svg .tick{font-size:11px;fill:#6b7280}
svg .axis{font-size:12px;fill:#374151}svg .chart-title{font-size:13px;font-weight:600;fill:#111827}
svg .legend{font-size:12px;fill:#374151}
.links{font-size:13px;color:var(--muted)}code.uri{word-break:break-all}
section.module{border-top:1px solid var(--line);margin-top:28px}
"""


def render_html(
    run_name: str,
    summary: dict[str, Any],
    modules: dict[str, ModuleOutputs],
    promotion: dict[str, Any] | None = None,
) -> str:
    """The report page for a run: promotion, overview, datasets, then one section per module."""
    from monGARS.mlops.evaluate.report_section import evaluation_section, promotion_banner

    names = sorted(modules)
    stages = [
        label
        for label, present in (
            ("datasets", True),
            ("SFT", any(m.sft_metrics or m.sft_adapter for m in modules.values())),
            ("llm2vec", any(m.encoder_metrics or m.encoder for m in modules.values())),
            ("GGUF export", any(m.bundle for m in modules.values())),
            ("evaluation", any(m.evaluation for m in modules.values())),
        )
        if present
    ]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>monGARS run {_esc(run_name)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>monGARS run <code>{_esc(run_name)}</code></h1>",
        f"<p class='sub'>{len(modules)} module{'s' if len(modules) != 1 else ''} · stages: "
        f"{_esc(', '.join(stages))} · monGARS mlops {_esc(__version__)}</p>",
        "<nav>Jump to: <a href='#overview'>overview</a><a href='#datasets'>datasets</a>"
        + "".join(f"<a href='#module-{_esc(n)}'>{_esc(n)}</a>" for n in names)
        + "</nav>",
        promotion_banner(promotion or {}),
        "<section id='overview'><h2>Overview</h2>",
        _overview(modules),
        "<p class='muted'>Losses are mean cross-entropy per token (lower is better); retrieval "
        "MRR is the mean reciprocal rank of the right passage (higher is better). Green marks an "
        "improvement, red a regression.</p></section>",
        _datasets_section(summary, modules),
    ]
    for name in names:
        module = modules[name]
        parts.append(f"<section class='module' id='module-{_esc(name)}'>")
        parts.append(f"<h2>Module <code>{_esc(name)}</code></h2>")
        body = (
            _sft_section(module)
            + _llm2vec_section(module)
            + _gguf_section(module)
            + evaluation_section(module.evaluation, module.promotion)
        )
        parts.append(body or "<p class='muted'>no training stage ran for this module yet</p>")
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts)


def write_report(
    run_name: str,
    datasets_summary_path: str | Path,
    summary_paths: Sequence[str | Path],
    html_path: str | Path,
    report_uri: str = "",
    promotion_path: str | Path | None = None,
) -> tuple[str, dict[str, float]]:
    """Write the HTML report; return (JSON of the run's artifact URIs, flat figures).

    The JSON is the pipeline's output: on a cluster it names object-store URIs, locally paths.
    ``promotion_path`` is the promote stage's small artifact folder (its ``promotion.json``).
    """
    from monGARS.mlops.summaries import join_uri, read_json_document

    promotion = (
        _as_dict(read_json_document(Path(promotion_path) / "promotion.json"))
        if promotion_path
        else {}
    )
    summary, modules, datasets_uri = gather(datasets_summary_path, summary_paths, promotion)
    write_text(html_path, render_html(run_name, summary, modules, promotion))
    locations = {
        "datasets": datasets_uri,
        "report": report_uri or str(html_path),
        "modules": {
            name: {
                "train_records": module.train_records,
                "val_records": module.val_records,
                "sft_adapter": module.sft_adapter,
                "encoder": module.encoder,
                "gguf_bundle": module.gguf_bundle,
                "gguf_files": [
                    join_uri(module.gguf_bundle, str(entry.get("path", "")))
                    for entry in bundle_files(module.bundle)
                ],
                **_evaluation_outputs(module),
            }
            for name, module in sorted(modules.items())
        },
    }
    if promotion:
        from monGARS.mlops.evaluate.promote import outcome_lines

        locations["promotion"] = {
            "registry": promotion.get("registry", ""),
            "promoted": promotion.get("promoted", []),
            "rejected": promotion.get("rejected", []),
            "lines": outcome_lines(promotion),
        }
    return json.dumps(locations, sort_keys=True), figures(modules)


def _evaluation_outputs(module: ModuleOutputs) -> dict[str, Any]:
    """What state.json keeps per module of the evaluation and the gate's decision."""
    out: dict[str, Any] = {}
    if module.evaluation:
        out["evaluation"] = {
            "quant": module.evaluation.get("quant"),
            "items": module.evaluation.get("items"),
            "seconds": (module.evaluation.get("seconds") or {}).get("total"),
            **{k: v for k, v in (module.evaluation.get("summary") or {}).items() if v},
        }
    if module.promotion:
        out["promotion"] = {
            "outcome": module.promotion.get("outcome"),
            "reasons": module.promotion.get("reasons", []),
            "champion": module.promotion.get("champion_after"),
            "published": module.promotion.get("published", False),
        }
    return out
