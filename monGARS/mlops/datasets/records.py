"""The four corpus record schemas of docs/architecture.md, and the text each one carries.

Every stage after build_datasets reads these files, so a record is checked here before it is
written: a record that does not fit its schema is dropped as ``invalid_fields``, never written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

KINDS = ("instruction", "reasoning", "conversation", "retrieval")
ROLES = ("system", "user", "assistant")

# Text fields per kind (besides ``id`` and ``source``), in the order their text is joined.
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "instruction": ("instruction", "input", "output"),
    "reasoning": ("question", "reasoning", "answer"),
}


class RecordError(ValueError):
    """A row or record that cannot become a valid record; ``reason`` is the drop counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


def _require_str(record: dict[str, Any], key: str, *, allow_empty: bool = False) -> None:
    value = record.get(key)
    if not isinstance(value, str):
        raise RecordError("invalid_fields", f"{key}: expected a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise RecordError("invalid_fields", f"{key}: empty")


def _require_str_list(record: dict[str, Any], key: str, *, allow_empty: bool) -> None:
    value = record.get(key)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RecordError("invalid_fields", f"{key}: expected a list of strings")
    if not allow_empty and not any(item.strip() for item in value):
        raise RecordError("invalid_fields", f"{key}: empty list")


def check_messages(messages: Any) -> None:
    """Whole threads: optional system message, then user/assistant alternating, ending on assistant.

    Ending on the assistant keeps every thread a complete training example for SFT.
    """
    if not isinstance(messages, list) or not messages:
        raise RecordError("invalid_fields", "messages: expected a non-empty list")
    for message in messages:
        if (
            not isinstance(message, dict)
            or set(message) != {"role", "content"}
            or message["role"] not in ROLES
            or not isinstance(message["content"], str)
            or not message["content"].strip()
        ):
            raise RecordError(
                "invalid_fields", "messages: each needs a role and a non-empty content"
            )
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    if len(turns) < 2:
        raise RecordError("invalid_fields", "messages: needs at least one user/assistant exchange")
    for index, message in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise RecordError("invalid_fields", "messages: roles must alternate user/assistant")
    if turns[-1]["role"] != "assistant":
        raise RecordError("invalid_fields", "messages: the thread must end on an assistant turn")


def check_record(kind: str, record: dict[str, Any]) -> None:
    """Raise ``RecordError`` unless ``record`` fits the ``kind`` schema exactly."""
    expected_keys = set(schema_keys(kind))
    if set(record) != expected_keys:
        raise RecordError("invalid_fields", f"keys {sorted(record)} != {sorted(expected_keys)}")
    _require_str(record, "id")
    _require_str(record, "source")
    if kind == "instruction":
        _require_str(record, "instruction")
        _require_str(record, "input", allow_empty=True)
        _require_str(record, "output")
    elif kind == "reasoning":
        for key in TEXT_FIELDS["reasoning"]:
            _require_str(record, key)
    elif kind == "conversation":
        check_messages(record["messages"])
    elif kind == "retrieval":
        _require_str(record, "query")
        _require_str_list(record, "positives", allow_empty=False)
        _require_str_list(record, "negatives", allow_empty=True)
    else:  # pragma: no cover - kinds are validated by the config
        raise ValueError(f"unknown kind {kind!r}")


def schema_keys(kind: str) -> tuple[str, ...]:
    """The exact keys of a ``kind`` record."""
    if kind in TEXT_FIELDS:
        return ("id", "source", *TEXT_FIELDS[kind])
    if kind == "conversation":
        return ("id", "source", "messages")
    return ("id", "source", "query", "positives", "negatives")


def map_texts(kind: str, record: dict[str, Any], transform: Callable[[str], str]) -> dict[str, Any]:
    """A copy of ``record`` with ``transform`` applied to every text it carries (not id/source)."""
    out = dict(record)
    if kind in TEXT_FIELDS:
        for key in TEXT_FIELDS[kind]:
            out[key] = transform(record[key])
    elif kind == "conversation":
        out["messages"] = [
            {"role": m["role"], "content": transform(m["content"])} for m in record["messages"]
        ]
    else:
        out["query"] = transform(record["query"])
        out["positives"] = [transform(text) for text in record["positives"]]
        out["negatives"] = [transform(text) for text in record["negatives"]]
    return out


def iter_texts(kind: str, record: dict[str, Any], *, with_negatives: bool = True) -> Iterator[str]:
    """Every text of a record, in schema order."""
    if kind in TEXT_FIELDS:
        for key in TEXT_FIELDS[kind]:
            yield record[key]
    elif kind == "conversation":
        for message in record["messages"]:
            yield message["content"]
    else:
        yield record["query"]
        yield from record["positives"]
        if with_negatives:
            yield from record["negatives"]


def content_text(kind: str, record: dict[str, Any]) -> str:
    """The record's own content joined into one text: what language, spam and dedup look at.

    Retrieval negatives are left out: they are other documents, not this record's content.
    """
    return "\n".join(text for text in iter_texts(kind, record, with_negatives=False) if text)
