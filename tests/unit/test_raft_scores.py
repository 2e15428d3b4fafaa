"""Held-out scoring of greedy answers: exact match, F1, quote match, no-quote match, format."""

from __future__ import annotations

import pytest

from monGARS.mlops.training.raft.data import RaftExample
from monGARS.mlops.training.raft.eval import score_answers
from monGARS.mlops.training.raft.format import render_answer

ORACLE = "qualname: charger\ndocstring: charge le modèle"


def _example(with_oracle: bool, answer: str = "Elle charge le modèle.") -> RaftExample:
    documents = (ORACLE, "autre document") if with_oracle else ("autre document", "encore un")
    return RaftExample(
        question_id="q",
        source="module",
        question="Que fait charger ?",
        documents=documents,
        oracle_index=0 if with_oracle else None,
        oracle=ORACLE,
        answer=answer,
        quotes=("docstring: charge le modèle",) if with_oracle else (),
        target=render_answer(["docstring: charge le modèle"] if with_oracle else [], answer),
    )


def test_scores_of_hand_written_answers() -> None:
    examples = [_example(True), _example(True), _example(True), _example(False)]
    outputs = [
        examples[0].target,  # perfect
        render_answer(["autre document"], "elle charge le modele"),  # quotes a distractor
        "Elle charge le modèle.",  # no format at all
        render_answer([], "Elle charge le modèle !"),  # says the oracle is absent: right
    ]
    scores = score_answers(examples, outputs)
    assert scores["examples"] == 4 and scores["examples_with_oracle"] == 3
    assert scores["exact_match"] == 0.5  # 0 and 3 (1 misspells modèle; 2 has no <ANSWER>:)
    assert scores["quote_match"] == pytest.approx(0.3333)
    assert scores["no_quote_match"] == 1.0
    assert scores["format_rate"] == 0.75
    assert scores["answer_f1"] == pytest.approx((1 + 0.75 + 0 + 1) / 4)


def test_degenerate_outputs_score_zero() -> None:
    examples = [_example(True), _example(False)]
    scores = score_answers(examples, ["#" * 40, "#" * 40])
    assert scores["exact_match"] == 0.0 and scores["answer_f1"] == 0.0
    assert scores["quote_match"] == 0.0 and scores["no_quote_match"] == 0.0
    assert scores["format_rate"] == 0.0
