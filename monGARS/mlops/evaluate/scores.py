"""Scores of a generated answer against its held-out record: exact match, F1, facts, French.

Exact match and token F1 are RAFT's (SQuAD-style normalisation, ``raft/format.py``), so the two
stages' figures mean the same thing. *Fact recall* is for code-mined records, whose ``fact`` field
holds what the reference answer was assembled from (``datasets/coderecords.py``): of the facts a
reader would check — path, line, signature, return type, docstring (functions), name and bases
(classes), the modules listed (imports) — the share that the answer states verbatim. The French
share uses the datasets' language identifier (``datasets/langid.py``): an answer counts as French
only when the identifier accepts it; an empty answer, or one with too little prose to judge, does
not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from monGARS.mlops.training.raft.format import exact_match, token_f1

__all__ = ["answer_scores", "exact_match", "fact_items", "fact_recall", "french_flags", "token_f1"]

MAX_FACT_ITEMS = 8  # listed modules/callers checked per record: enough to tell, bounded
_SPACES = re.compile(r"\s+")


def _squash(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def fact_items(fact: Mapping[str, Any] | None) -> dict[str, str]:
    """What an answer must state about ``fact``, by name; {} when nothing is checkable."""
    if not isinstance(fact, Mapping):
        return {}
    kind = fact.get("type")
    items: dict[str, str] = {}
    if kind in ("function", "class"):
        items["path"] = str(fact.get("path") or "")
        items["line"] = str(fact.get("line") or "")
    if kind == "function":
        items["signature"] = str(fact.get("signature") or "")
        returns = str(fact.get("returns") or "")
        if returns and returns != "None":
            items["returns"] = returns
        items["docstring"] = str(fact.get("docstring") or "")
    elif kind == "class":
        items["name"] = str(fact.get("name") or "")
        for index, base in enumerate((fact.get("bases") or [])[:MAX_FACT_ITEMS]):
            items[f"base_{index}"] = str(base)
        items["docstring"] = str(fact.get("docstring") or "")
    elif kind in ("imports", "imported_by"):
        key = "internal" if kind == "imports" else "importers"
        for index, name in enumerate((fact.get(key) or [])[:MAX_FACT_ITEMS]):
            items[f"module_{index}"] = str(name)
        if kind == "imports":
            for index, name in enumerate((fact.get("external") or [])[:MAX_FACT_ITEMS]):
                items[f"external_{index}"] = str(name)
    elif kind == "framework_usage":
        items["path"] = str(fact.get("path") or "")
        for index, call in enumerate((fact.get("calls") or [])[:MAX_FACT_ITEMS]):
            items[f"call_line_{index}"] = str(call.get("line") or "")
    return {name: _squash(value) for name, value in items.items() if _squash(value)}


def _states(answer: str, name: str, expected: str) -> bool:
    if name == "line" or name.startswith("call_line_"):
        # A line number must stand alone: 12 is not stated by 120 or by 3.12.
        return re.search(rf"(?<![\w.]){re.escape(expected)}(?![\w.])", answer) is not None
    return expected in answer


def fact_recall(
    answer: str, fact: Mapping[str, Any] | None
) -> tuple[float | None, dict[str, bool]]:
    """(share of the fact's items the answer states, each item's verdict); None without items."""
    items = fact_items(fact)
    if not items:
        return None, {}
    said = _squash(answer or "")
    verdicts = {name: _states(said, name, expected) for name, expected in items.items()}
    return sum(verdicts.values()) / len(verdicts), verdicts


def french_flags(answers: Sequence[str], languages: Sequence[str] = ("fr",)) -> list[bool]:
    """Per answer: does the project's language identifier accept it as ``languages``?"""
    from monGARS.mlops.datasets.langid import ACCEPTED, judge_all

    texts = [answer or "" for answer in answers]
    return [verdict == ACCEPTED for verdict in judge_all(texts, list(languages))]


def answer_scores(
    answers: Sequence[str], references: Sequence[str], facts: Sequence[Mapping[str, Any] | None]
) -> dict[str, Any]:
    """Mean exact match, token F1, fact recall (over records with facts) and French share."""
    if not (len(answers) == len(references) == len(facts)):
        raise ValueError("answers, references and facts must have the same length")
    count = len(answers)
    recalls = [r for r, _ in (fact_recall(a, f) for a, f in zip(answers, facts, strict=True))]
    with_facts = [r for r in recalls if r is not None]
    french = french_flags(answers)

    def mean(values: Sequence[float]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    return {
        "examples": count,
        "exact_match": mean(
            [float(exact_match(a, r)) for a, r in zip(answers, references, strict=True)]
        ),
        "token_f1": mean([token_f1(a, r) for a, r in zip(answers, references, strict=True)]),
        "fact_recall": mean(with_facts),
        "fact_examples": len(with_facts),
        "french_share": mean([float(flag) for flag in french]),
        "empty_answers": sum(1 for a in answers if not (a or "").strip()),
    }
