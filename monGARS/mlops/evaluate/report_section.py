"""The report's evaluation parts: the promotion banner and, per module, base → tuned → champion.

Built with the report's own table and change helpers (``monGARS/mlops/report.py``) so the page
reads the same everywhere: green for an improvement, red for a regression.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# (figure, label, lower is better, digits)
ROWS = (
    ("assistant_nll", "assistant-token NLL (nats/token)", True, 3),
    ("perplexity", "perplexity", True, 1),
    ("exact_match", "exact match", False, 3),
    ("token_f1", "token F1", False, 3),
    ("fact_recall", "fact recall (code-mined records)", False, 3),
    ("french_share", "French answers", False, 3),
    ("retrieval_mrr", "retrieval MRR (encoder)", False, 3),
    ("retrieval_recall_at_10", "retrieval recall@10", False, 3),
)


def promotion_banner(promotion: Mapping[str, Any]) -> str:
    """One line per module: promoted (new champion) or rejected, with every reason."""
    from monGARS.mlops.report import _esc

    modules = promotion.get("modules") or {}
    if not modules:
        return ""
    items = []
    for name, result in sorted(modules.items()):
        if result.get("promoted"):
            where = (
                f"new champion <code>{_esc(result.get('champion_after'))}</code>"
                if result.get("published")
                else "not published (no registry, or publish=false)"
            )
            items.append(
                f"<li><code>{_esc(name)}</code>: <b class='good'>promoted</b> — {where}</li>"
            )
        else:
            reasons = "".join(f"<li>{_esc(r)}</li>" for r in result.get("reasons") or [])
            kept = result.get("champion_before") or "none"
            items.append(
                f"<li><code>{_esc(name)}</code>: <b class='bad'>rejected</b> — the champion "
                f"stays <code>{_esc(kept)}</code><ul>{reasons}</ul></li>"
            )
    registry = promotion.get("registry") or "none (nothing published)"
    return (
        "<section id='promotion'><h2>Promotion</h2>"
        f"<ul>{''.join(items)}</ul><p class='muted'>champion registry: "
        f"<code>{_esc(registry)}</code></p></section>"
    )


def evaluation_section(evaluation: Mapping[str, Any], promotion: Mapping[str, Any] | None) -> str:
    """Base → tuned → champion on the module's held-out items, and what GGUF costs against HF."""
    from monGARS.mlops.report import _change, _esc, _fmt, _table

    if not evaluation:
        return ""
    summaries = evaluation.get("summary") or {}
    base, tuned, hf = (summaries.get(k) or {} for k in ("base", "tuned", "hf"))
    # HF answers cover the first items only: compare the GGUF on those same items.
    gguf_for_hf = {**tuned, **(summaries.get("tuned_on_hf_items") or {})}
    champion = ((promotion or {}).get("figures") or {}).get("champion") or {}
    rows = []
    for key, label, lower, digits in ROWS:
        if all(m.get(key) is None for m in (base, tuned, champion, hf)):
            continue
        rows.append(
            [
                _esc(label),
                _change(base.get(key), tuned.get(key), lower_is_better=lower, digits=digits),
                _change(champion.get(key), tuned.get(key), lower_is_better=lower, digits=digits)
                if champion
                else "–",
                _change(hf.get(key), gguf_for_hf.get(key), lower_is_better=lower, digits=digits)
                if hf
                else "–",
            ]
        )
    seconds = evaluation.get("seconds") or {}
    parity = evaluation.get("gguf_vs_hf") or {}
    parts = [
        f"<h3>Evaluation of the files that ship ({_esc(evaluation.get('quant'))}, "
        f"{_fmt(evaluation.get('items'))} held-out items)</h3>",
        _table(
            [
                "figure",
                "base → tuned",
                f"champion{' ' + str(champion.get('version')) if champion else ''} → tuned",
                "HF → GGUF (same items)",
            ],
            rows,
            "lrrr",
        ),
        "<p class='muted'>Every model answers the same items with the same tokens, greedily; "
        f"the GGUF gives the same answer as the HF model on "
        f"{_fmt((parity.get('same_answer_share') or 0) * 100, 1)} % of them. Evaluation took "
        f"{_fmt(seconds.get('total'), 1)} s (base model: "
        f"{_esc(evaluation.get('base_gguf', '–'))}).</p>",
    ]
    samples = evaluation.get("samples") or []
    if samples:
        parts.append(
            _table(
                ["reference", "tuned answer", "base answer"],
                [
                    [
                        _esc(s.get("reference", "")),
                        _esc(s.get("tuned", "")),
                        _esc(s.get("base", "")),
                    ]
                    for s in samples
                ],
            )
        )
    return "".join(parts)
