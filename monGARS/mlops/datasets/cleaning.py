"""Per-record cleaning: normalise, check the schema, then length, spam, PII and language filters.

Filters run in a fixed order and a dropped record counts under the first reason it fails, so
the reason counts add up to the records dropped. Duplicate removal comes after, across sources
(``dedup.Deduplicator``), because it needs the records kept so far.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from monGARS.mlops.datasets.langid import DEFAULT_MIN_PROBABILITY, REJECTED, UNDECIDED, judge_all
from monGARS.mlops.datasets.normalize import normalize_text
from monGARS.mlops.datasets.pii import find_pii, redact
from monGARS.mlops.datasets.records import RecordError, check_record, content_text, map_texts
from monGARS.mlops.datasets.spam import spam_reason


@dataclass(frozen=True)
class CleaningRules:
    """The thresholds cleaning needs (taken from ``DatasetsConfig``)."""

    min_chars: int = 16
    max_chars: int = 20_000
    languages: tuple[str, ...] = ("fr",)
    language_min_probability: float = DEFAULT_MIN_PROBABILITY
    language_undecided: str = "keep"  # or "drop": records with too little prose to judge
    pii_drop: frozenset[str] = frozenset({"card", "iban", "nir", "secret"})

    @classmethod
    def from_config(cls, config: Any) -> CleaningRules:
        return cls(
            min_chars=config.min_chars,
            max_chars=config.max_chars,
            languages=tuple(config.languages),
            language_min_probability=config.language_min_probability,
            language_undecided=config.language_undecided,
            pii_drop=frozenset(config.pii_drop),
        )


@dataclass
class Cleaned:
    """The outcome for one record: the cleaned record, or the reason it was dropped.

    ``notes`` counts what was let through by a rule rather than a check (``language_undecided``).
    """

    record: dict[str, Any] | None
    reason: str | None
    redacted: Counter[str]
    notes: Counter[str] = field(default_factory=Counter)


def _scrub(
    kind: str, record: dict[str, Any], rules: CleaningRules
) -> tuple[dict[str, Any], Counter[str]]:
    redacted: Counter[str] = Counter()

    def transform(text: str) -> str:
        matches = find_pii(text)
        for match in matches:
            if match.kind in rules.pii_drop:
                raise RecordError(f"pii_{match.kind}")
        redacted.update(match.kind for match in matches)
        return redact(text, matches) if matches else text

    return map_texts(kind, record, transform), redacted


# The drop reason of a language verdict under the ``language_undecided`` rule (none: kept).
_LANGUAGE_REASONS = {
    (REJECTED, "keep"): "language",
    (REJECTED, "drop"): "language",
    (UNDECIDED, "drop"): "language_undecided",
}


def _filter_record(kind: str, record: dict[str, Any], rules: CleaningRules) -> Cleaned:
    """Every filter but language: normalise, schema, length, spam, then PII redaction."""
    try:
        record = map_texts(kind, record, normalize_text)
        check_record(kind, record)
        text = content_text(kind, record)
        if len(text) < rules.min_chars:
            raise RecordError("too_short")
        if len(text) > rules.max_chars:
            raise RecordError("too_long")
        if reason := spam_reason(text):
            raise RecordError(reason)
        record, redacted = _scrub(kind, record, rules)
    except RecordError as error:
        return Cleaned(None, error.reason, Counter())
    return Cleaned(record, None, redacted)


def clean_batch(kind: str, records: list[dict[str, Any]], rules: CleaningRules) -> list[Cleaned]:
    """Normalise and filter candidate records (already in the ``kind`` schema's shape).

    The language models score the batch's survivors together (much cheaper than one by one,
    same verdicts); each record's outcome is what ``clean_record`` gives it alone.
    """
    outcomes = [_filter_record(kind, record, rules) for record in records]
    survivors = [outcome for outcome in outcomes if outcome.record is not None]
    verdicts = judge_all(
        [content_text(kind, outcome.record) for outcome in survivors],  # type: ignore[arg-type]
        rules.languages,
        rules.language_min_probability,
    )
    for outcome, verdict in zip(survivors, verdicts, strict=True):
        reason = _LANGUAGE_REASONS.get((verdict, rules.language_undecided))
        if reason:
            outcome.record, outcome.reason, outcome.redacted = None, reason, Counter()
        elif verdict == UNDECIDED:
            outcome.notes["language_undecided"] += 1
    return outcomes


def clean_record(kind: str, record: dict[str, Any], rules: CleaningRules) -> Cleaned:
    """Normalise and filter one candidate record (already in the ``kind`` schema's shape)."""
    return clean_batch(kind, [record], rules)[0]
