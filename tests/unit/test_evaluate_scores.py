"""Answer scores on hand-built cases: right path and signature, a wrong one, empty, English."""

from __future__ import annotations

from pathlib import Path

import pytest

from monGARS.mlops.datasets.codemine import mine_tree
from monGARS.mlops.datasets.coderecords import module_records
from monGARS.mlops.datasets.codetree import iter_source_files, resolve_roots
from monGARS.mlops.evaluate.scores import answer_scores, fact_items, fact_recall, french_flags

FIXTURE_TREE = Path(__file__).resolve().parents[1] / "fixtures" / "datasets" / "code_tree"


@pytest.fixture(scope="module")
def function_record(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real code-mined record about a function with a signature, a return type and a docstring."""
    (root,) = resolve_roots([str(FIXTURE_TREE)], tmp_path_factory.mktemp("scratch"))
    records = list(module_records(mine_tree(list(iter_source_files(root))), []))
    for record in records:
        fact = record["fact"]
        if (
            fact["type"] == "function"
            and fact["docstring"]
            and fact["returns"] not in ("", "None")
            and "signature" in record["messages"][-1]["content"]
        ):
            return record
    raise AssertionError("the fixture tree has no documented function with a return type")


def test_the_reference_answer_states_every_fact(function_record: dict) -> None:
    reference = function_record["messages"][-1]["content"]
    recall, verdicts = fact_recall(reference, function_record["fact"])
    assert set(verdicts) == {"path", "line", "signature", "returns", "docstring"}
    assert recall == 1.0


def test_right_path_and_signature_only_gets_partial_credit(function_record: dict) -> None:
    fact = function_record["fact"]
    answer = f"Elle est dans `{fact['path']}`, signature `{fact['signature']}`."
    recall, verdicts = fact_recall(answer, fact)
    assert verdicts["path"] and verdicts["signature"]
    assert not verdicts["line"] and not verdicts["docstring"]
    stated = 3 if fact["returns"] in fact["signature"] else 2  # the signature shows the return type
    assert verdicts["returns"] == (stated == 3)
    assert recall == pytest.approx(stated / 5)


def test_wrong_path_and_line_score_nothing(function_record: dict) -> None:
    fact = function_record["fact"]
    wrong = f"Elle est définie dans `autre/chemin.py` (ligne {fact['line']}0) sans signature."
    recall, verdicts = fact_recall(wrong, fact)
    assert not verdicts["path"] and not verdicts["line"]  # line 120 does not state line 12
    assert recall == 0.0


def test_empty_and_english_answers(function_record: dict) -> None:
    reference = function_record["messages"][-1]["content"]
    fact = function_record["fact"]
    english = (
        f"The function is defined in {fact['path']} and it returns a value; it is documented "
        "in the project and the documentation explains how it works in English."
    )
    scores = answer_scores(["", english, reference], [reference] * 3, [fact] * 3)
    assert scores["empty_answers"] == 1
    assert scores["exact_match"] == pytest.approx(1 / 3, abs=1e-4)  # only the reference itself
    assert french_flags(["", english, reference]) == [False, False, True]
    assert scores["french_share"] == pytest.approx(1 / 3, abs=1e-4)
    recall_empty, _ = fact_recall("", fact)
    assert recall_empty == 0.0
    assert 0.0 < scores["token_f1"] < 1.0


def test_records_without_facts_are_left_out_of_fact_recall() -> None:
    assert fact_items(None) == {}
    assert fact_recall("n'importe quoi", None) == (None, {})
    scores = answer_scores(["Paris est la capitale de la France."], ["Paris."], [None])
    assert scores["fact_recall"] is None and scores["fact_examples"] == 0
    with pytest.raises(ValueError, match="same length"):
        answer_scores(["a"], [], [])
