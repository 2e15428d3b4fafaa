"""Adapters: raw rows in a source's own schema -> candidate records in the project's schemas.

- ``native``: the schemas of docs/architecture.md (extra keys ignored, ``source`` replaced).
- ``xp3``: bigscience/xP3 rows ``{"inputs", "targets"}`` -> instruction records.
- ``aya``: CohereForAI/aya_collection rows ``{"id", "inputs", "targets", "language", ...}``;
  rows whose ``language`` tag names another language are dropped (``language_tag``).
- ``oasst2``: OpenAssistant/oasst2 message rows (``message_id``, ``parent_id``,
  ``message_tree_id``, ``role`` prompter/assistant, ``lang``, ``text``, ``rank``, ``deleted``) ->
  one conversation per tree: the best-ranked path from the root prompt, as alternating messages.
  The nested "trees" export (``{"message_tree_id", "prompt": {..., "replies": [...]}}``) works too.
- ``miracl``: miracl/miracl rows ``{"query_id", "query", "positive_passages",
  "negative_passages"}`` (passages ``{"docid", "title", "text"}``) -> retrieval records.
- ``generic``: user-named fields (dotted paths into nested objects) for any kind.

Each adapter is a generator over rows; rows it cannot use are counted on the stats by reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from monGARS.mlops.datasets.config import SourceSpec
from monGARS.mlops.datasets.records import RecordError
from monGARS.mlops.datasets.stats import SourceStats

Record = dict[str, Any]
Adapter = Callable[[Iterable[Record], SourceSpec, SourceStats, list[str]], Iterator[Record]]

# Language tags sources use, per language code of the config (ISO 639-1, 639-2/3, names).
LANGUAGE_TAGS: dict[str, set[str]] = {
    "fr": {"fr", "fra", "fre", "french", "français", "francais", "fr-fr", "fr_fr"},
    "en": {"en", "eng", "english", "en-us", "en-gb"},
    "es": {"es", "spa", "spanish", "español", "espanol"},
    "de": {"de", "deu", "ger", "german", "deutsch"},
    "it": {"it", "ita", "italian", "italiano"},
    "pt": {"pt", "por", "portuguese", "português", "pt-br"},
    "nl": {"nl", "nld", "dut", "dutch", "nederlands"},
}
ROLE_ALIASES = {
    "user": "user",
    "human": "user",
    "prompter": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "chatbot": "assistant",
    "system": "system",
}


def accepted_tags(languages: list[str]) -> set[str]:
    return set().union(*(LANGUAGE_TAGS.get(code, {code}) for code in languages))


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise RecordError("invalid_fields", f"{field}: expected a string")
    return value


def _record_id(spec: SourceSpec, raw_id: Any, payload: Record) -> str:
    """Native ids are kept; others are prefixed with the source name; missing ids are hashed."""
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    if not isinstance(raw_id, str) or not raw_id.strip():
        digest = hashlib.sha1(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode())
        raw_id = digest.hexdigest()[:16]
    raw_id = raw_id.strip()
    return raw_id if spec.adapter == "native" else f"{spec.name}-{raw_id}"


def _finish(spec: SourceSpec, raw_id: Any, payload: Record) -> Record:
    return {"id": _record_id(spec, raw_id, payload), "source": spec.name, **payload}


def _string_list(value: Any, field: str) -> list[str]:
    """A list of texts from a string, a list of strings, or passages ``{"title", "text"}``."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):  # lists stored as JSON text (CSV columns)
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                raise RecordError("invalid_fields", f"{field}: not a JSON list") from None
        else:
            return [value]
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecordError("invalid_fields", f"{field}: expected a list")
    out = []
    for item in value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            out.append(passage_text(item))
        else:
            raise RecordError("invalid_fields", f"{field}: items must be strings or passages")
    return out


def passage_text(passage: Record) -> str:
    """A passage as one text: the title on its own line, then the body."""
    title = passage.get("title")
    text = passage["text"]
    return f"{title.strip()}\n{text}" if isinstance(title, str) and title.strip() else text


def _native_payload(kind: str, row: Record) -> Record:
    if kind == "instruction":
        return {
            "instruction": _text(row.get("instruction"), "instruction"),
            "input": _text(row.get("input", ""), "input"),
            "output": _text(row.get("output"), "output"),
        }
    if kind == "reasoning":
        return {key: _text(row.get(key), key) for key in ("question", "reasoning", "answer")}
    if kind == "conversation":
        return {"messages": _messages(row.get("messages"), "role", "content", "messages")}
    return {
        "query": _text(row.get("query"), "query"),
        "positives": _string_list(row.get("positives"), "positives"),
        "negatives": _string_list(row.get("negatives", []), "negatives"),
    }


def _messages(value: Any, role_key: str, content_key: str, field: str) -> list[Record]:
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RecordError("invalid_fields", f"{field}: not a JSON list") from None
    if not isinstance(value, list):
        raise RecordError("invalid_fields", f"{field}: expected a list of messages")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise RecordError("invalid_fields", f"{field}: each message must be an object")
        role = ROLE_ALIASES.get(str(item.get(role_key, "")).strip().lower())
        if role is None:
            raise RecordError("invalid_fields", f"{field}: unknown role {item.get(role_key)!r}")
        out.append(
            {"role": role, "content": _text(item.get(content_key), f"{field}.{content_key}")}
        )
    return out


def _guard(
    rows: Iterable[Record], stats: SourceStats, build: Callable[[Record], Record | None]
) -> Iterator[Record]:
    """Apply a one-row-one-record ``build`` and count rows it refuses."""
    for row in rows:
        try:
            record = build(row)
        except RecordError as error:
            stats.drop(error.reason)
            continue
        if record is not None:
            yield record


def native(
    rows: Iterable[Record], spec: SourceSpec, stats: SourceStats, languages: list[str]
) -> Iterator[Record]:
    return _guard(
        rows, stats, lambda row: _finish(spec, row.get("id"), _native_payload(spec.kind, row))
    )


def xp3(
    rows: Iterable[Record], spec: SourceSpec, stats: SourceStats, languages: list[str]
) -> Iterator[Record]:
    return _guard(rows, stats, lambda row: _finish(spec, row.get("id"), _inputs_targets(row)))


def _inputs_targets(row: Record) -> Record:
    """The instruction payload of the xP3 / Aya schema (``inputs`` -> ``targets``)."""
    return {
        "instruction": _text(row.get("inputs"), "inputs"),
        "input": "",
        "output": _text(row.get("targets"), "targets"),
    }


def aya(
    rows: Iterable[Record], spec: SourceSpec, stats: SourceStats, languages: list[str]
) -> Iterator[Record]:
    tags = accepted_tags(languages)

    def build(row: Record) -> Record:
        language = row.get("language")
        if isinstance(language, str) and language.strip().lower() not in tags:
            raise RecordError("language_tag")
        return _finish(spec, row.get("id"), _inputs_targets(row))

    return _guard(rows, stats, build)


def miracl(
    rows: Iterable[Record], spec: SourceSpec, stats: SourceStats, languages: list[str]
) -> Iterator[Record]:
    def build(row: Record) -> Record:
        payload = {
            "query": _text(row.get("query"), "query"),
            "positives": _string_list(row.get("positive_passages"), "positive_passages"),
            "negatives": _string_list(row.get("negative_passages", []), "negative_passages"),
        }
        return _finish(spec, row.get("query_id"), payload)

    return _guard(rows, stats, build)


def _lookup(row: Record, path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise RecordError("invalid_fields", f"missing field {path!r}")
        value = value[part]
    return value


def generic(
    rows: Iterable[Record], spec: SourceSpec, stats: SourceStats, languages: list[str]
) -> Iterator[Record]:
    fields = spec.fields

    def build(row: Record) -> Record:
        def get(target: str, default: Any = None) -> Any:
            return _lookup(row, fields[target]) if target in fields else default

        kind = spec.kind
        if kind == "instruction":
            payload = {
                "instruction": _text(get("instruction"), "instruction"),
                "input": _text(get("input", ""), "input"),
                "output": _text(get("output"), "output"),
            }
        elif kind == "reasoning":
            payload = {key: _text(get(key), key) for key in ("question", "reasoning", "answer")}
        elif kind == "conversation":
            payload = {
                "messages": _messages(
                    get("messages"),
                    fields.get("role", "role"),
                    fields.get("content", "content"),
                    "messages",
                )
            }
        else:
            payload = {
                "query": _text(get("query"), "query"),
                "positives": _string_list(get("positives"), "positives"),
                "negatives": _string_list(get("negatives", []), "negatives"),
            }
        return _finish(spec, get("id"), payload)

    return _guard(rows, stats, build)


# ---- oasst2 -------------------------------------------------------------------------------


def _flatten_tree(row: Record) -> Iterator[Record]:
    """Messages of a nested oasst "trees" row, parents before children."""
    stack = [(row["prompt"], None)]
    while stack:
        message, parent = stack.pop()
        if not isinstance(message, dict):
            continue
        flat = {key: value for key, value in message.items() if key != "replies"}
        flat.setdefault("parent_id", parent)
        flat.setdefault("message_tree_id", row.get("message_tree_id"))
        yield flat
        for reply in reversed(message.get("replies") or []):
            stack.append((reply, message.get("message_id")))


def _usable(message: Record) -> bool:
    return not message.get("deleted") and message.get("review_result") is not False


def _best_thread(messages: list[Record]) -> list[Record]:
    """The root prompt then, at each step, the best-ranked reply (rank 0 first, unranked last)."""
    children: dict[Any, list[Record]] = {}
    roots = []
    for message in messages:
        if message.get("parent_id") is None:
            roots.append(message)
        else:
            children.setdefault(message["parent_id"], []).append(message)
    if len(roots) != 1 or not _usable(roots[0]) or roots[0].get("role") != "prompter":
        return []
    path = [roots[0]]
    while True:
        expected = "assistant" if path[-1]["role"] == "prompter" else "prompter"
        replies = [
            m
            for m in children.get(path[-1]["message_id"], [])
            if _usable(m) and m.get("role") == expected
        ]
        if not replies:
            break
        replies.sort(
            key=lambda m: (m.get("rank") is None, m.get("rank") or 0, str(m["message_id"]))
        )
        path.append(replies[0])
    if path[-1]["role"] == "prompter":
        path.pop()
    return path


def _tree_record(
    spec: SourceSpec, stats: SourceStats, tree_id: Any, messages: list[Record], tags: set[str]
) -> Record | None:
    root_lang = next((m.get("lang") for m in messages if m.get("parent_id") is None), None)
    if isinstance(root_lang, str) and root_lang.strip().lower() not in tags:
        stats.drop("language_tag")
        return None
    thread = _best_thread(messages)
    if len(thread) < 2:
        stats.drop("incomplete_thread")
        return None
    payload = {
        "messages": [
            {"role": "user" if m["role"] == "prompter" else "assistant", "content": m["text"]}
            for m in thread
        ]
    }
    return _finish(spec, tree_id, payload)


def oasst2(
    rows: Iterable[Record], spec: SourceSpec, stats: SourceStats, languages: list[str]
) -> Iterator[Record]:
    """Group message rows by tree (rows of one tree are contiguous in the oasst2 exports).

    Only the current tree is held in memory; a tree whose rows are split in two places gives two
    partial trees, and the one without a root prompt is counted as ``incomplete_thread``.
    """
    tags = accepted_tags(languages)
    current_id: Any = None
    buffer: list[Record] = []

    def messages_of(row: Record) -> Iterator[Record]:
        if isinstance(row.get("prompt"), dict):
            yield from _flatten_tree(row)
        else:
            yield row

    for row in rows:
        for message in messages_of(row):
            if not (
                isinstance(message.get("message_id"), str)
                and isinstance(message.get("text"), str)
                and message.get("role") in ("prompter", "assistant")
                and message.get("message_tree_id") is not None
            ):
                stats.drop("invalid_fields")
                continue
            tree_id = message["message_tree_id"]
            if buffer and tree_id != current_id:
                record = _tree_record(spec, stats, current_id, buffer, tags)
                if record is not None:
                    yield record
                buffer = []
            current_id = tree_id
            buffer.append(message)
    if buffer:
        record = _tree_record(spec, stats, current_id, buffer, tags)
        if record is not None:
            yield record


ADAPTERS: dict[str, Adapter] = {
    "native": native,
    "generic": generic,
    "xp3": xp3,
    "aya": aya,
    "oasst2": oasst2,
    "miracl": miracl,
}
