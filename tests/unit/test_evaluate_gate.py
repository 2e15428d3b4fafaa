"""The promotion gate: gain over base, French share, no regression against the champion."""

from __future__ import annotations

import math

import pytest

from monGARS.mlops.configs import load_config
from monGARS.mlops.errors import ConfigError
from monGARS.mlops.evaluate.config import PromotionConfig
from monGARS.mlops.evaluate.gate import decide

BASE = {"assistant_nll": 7.0, "token_f1": 0.0, "french_share": 0.5}
GOOD = {"assistant_nll": 5.6, "token_f1": 0.2, "fact_recall": 0.4, "french_share": 1.0}


def test_better_than_base_and_no_champion_is_promoted() -> None:
    decision = decide("m", GOOD, BASE, None, PromotionConfig())
    assert decision.promoted and decision.reasons == []
    assert {c.name for c in decision.checks} == {"gain_over_base", "french_share"}


def test_every_failed_rule_is_a_reason() -> None:
    worse = {"assistant_nll": 9.3, "token_f1": 0.0, "fact_recall": 0.0, "french_share": 0.1}
    champion = {**GOOD, "retrieval_mrr": 0.6}
    decision = decide("m", worse, BASE, champion, PromotionConfig(min_french_share=0.5))
    assert not decision.promoted and decision.outcome == "rejected"
    failed = {c.name for c in decision.checks if not c.passed}
    assert failed == {
        "gain_over_base",
        "french_share",
        "vs_champion:assistant_nll",
        "vs_champion:token_f1",
        "vs_champion:fact_recall",
        "vs_champion:french_share",
        "vs_champion:retrieval_mrr",  # the tuned run has no retrieval figure: not a pass
    }
    assert len(decision.reasons) == len(failed)
    assert any("9.3000 vs base 7.0000" in reason for reason in decision.reasons)


def test_non_finite_nll_is_rejected() -> None:
    decision = decide("m", {**GOOD, "assistant_nll": math.nan}, BASE, None, PromotionConfig())
    assert not decision.promoted
    assert "not finite" in decision.reasons[0]


def test_tolerance_against_the_champion() -> None:
    champion = {**GOOD, "assistant_nll": 5.5, "token_f1": 0.21}
    within = decide("m", GOOD, BASE, champion, PromotionConfig(tolerance=0.02))
    assert within.promoted  # NLL 5.6 <= 5.5 * 1.02, F1 0.20 >= 0.21 - 0.02
    strict = decide("m", GOOD, BASE, champion, PromotionConfig(tolerance=0.005))
    assert not strict.promoted
    assert {c.name for c in strict.checks if not c.passed} == {
        "vs_champion:assistant_nll",  # 5.6 > 5.5 * 1.005
        "vs_champion:token_f1",  # 0.20 < 0.21 - 0.005
    }


def test_min_gain_over_base() -> None:
    assert not decide("m", GOOD, BASE, None, PromotionConfig(min_gain_over_base=2.0)).promoted
    assert decide("m", GOOD, BASE, None, PromotionConfig(min_gain_over_base=1.0)).promoted


def test_bad_gate_settings_are_refused_together() -> None:
    with pytest.raises(ConfigError) as error:
        load_config(PromotionConfig, {"tolerance": 1.5, "min_french_share": -0.1})
    assert len(error.value.problems) == 2
