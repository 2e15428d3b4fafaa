"""The promotion gate: is this run's module better than the base, and no worse than the champion?

Every rule is checked and reported, passed or not, so a rejected night says each reason at once:

- ``gain_over_base``: the tuned assistant-token NLL is finite and at least ``min_gain_over_base``
  below the base model's (same items, same quant);
- ``french_share``: at least ``min_french_share`` of the tuned answers are French;
- ``vs_champion:<figure>`` (only when there is a champion, re-scored on this run's items): NLL at
  most ``tolerance`` × the champion's higher; each score in [0, 1] (token F1, fact recall,
  French share, retrieval MRR) at most ``tolerance`` lower.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from monGARS.mlops.evaluate.config import PromotionConfig

SHARE_FIGURES = ("token_f1", "fact_recall", "french_share", "retrieval_mrr")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    """The gate's verdict for one module; ``reasons`` are the failed checks' details."""

    module: str
    promoted: bool
    checks: list[Check] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.checks if not c.passed]

    @property
    def outcome(self) -> str:
        return "promoted" if self.promoted else "rejected"

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "outcome": self.outcome,
            "promoted": self.promoted,
            "reasons": self.reasons,
            "checks": [asdict(c) for c in self.checks],
        }


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def decide(
    module: str,
    tuned: Mapping[str, Any],
    base: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    config: PromotionConfig,
) -> Decision:
    """Apply every rule of the module doc to headline figures (``run.summary`` dicts)."""
    checks: list[Check] = []
    nll, base_nll = _number(tuned.get("assistant_nll")), _number(base.get("assistant_nll"))
    if nll is None or not math.isfinite(nll):
        checks.append(
            Check("gain_over_base", False, f"tuned assistant NLL is {_fmt(nll)} (not finite)")
        )
    elif base_nll is None or not math.isfinite(base_nll):
        checks.append(
            Check("gain_over_base", True, f"base NLL {_fmt(base_nll)}: any finite NLL gains")
        )
    else:
        gain = base_nll - nll
        checks.append(
            Check(
                "gain_over_base",
                gain >= config.min_gain_over_base and gain > 0,
                f"assistant NLL {nll:.4f} vs base {base_nll:.4f}: gain {gain:+.4f} "
                f"(needs > 0 and >= {config.min_gain_over_base})",
            )
        )
    french = _number(tuned.get("french_share")) or 0.0
    checks.append(
        Check(
            "french_share",
            french >= config.min_french_share,
            f"French share {french:.3f} (needs >= {config.min_french_share})",
        )
    )
    if champion:
        checks.extend(_against_champion(tuned, champion, config.tolerance))
    return Decision(module, all(c.passed for c in checks), checks)


def _against_champion(
    tuned: Mapping[str, Any], champion: Mapping[str, Any], tolerance: float
) -> list[Check]:
    checks = []
    nll, best = _number(tuned.get("assistant_nll")), _number(champion.get("assistant_nll"))
    if best is not None and math.isfinite(best):
        ceiling = best * (1 + tolerance) if best >= 0 else best * (1 - tolerance)
        ok = nll is not None and math.isfinite(nll) and nll <= ceiling
        checks.append(
            Check(
                "vs_champion:assistant_nll",
                ok,
                f"assistant NLL {_fmt(nll)} vs champion {best:.4f} (at most {ceiling:.4f})",
            )
        )
    for figure in SHARE_FIGURES:
        mine, theirs = _number(tuned.get(figure)), _number(champion.get(figure))
        if theirs is None:
            continue
        floor = theirs - tolerance
        ok = mine is not None and mine >= floor
        checks.append(
            Check(
                f"vs_champion:{figure}",
                ok,
                f"{figure} {_fmt(mine)} vs champion {theirs:.4f} (at least {floor:.4f})",
            )
        )
    return checks
