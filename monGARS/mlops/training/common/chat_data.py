"""Chat records for SFT: loading, French-corpus mixing, chat-template rendering and the label mask.

The loss must fall on what the assistant says and nothing else. Each assistant turn's characters
are found by rendering message prefixes with the tokenizer's own chat template (the prompt up to
the turn with ``add_generation_prompt=True``, then the prompt plus the turn), so the mask follows
any template that renders prefix-stable; tokens overlapping those characters keep their labels,
every other token (system, user, role headers, padding) gets -100.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.common.jsonl import read_jsonl

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant")
CORPUS_KINDS = ("instruction", "reasoning", "conversation")  # retrieval has no chat form
SPLITS = ("train", "val")


def default_chat_template(end_of_turn: str) -> str:
    """ChatML, the default where a tokenizer has none; ``end_of_turn`` closes every turn.

    ChatML appends each turn as text, so it is prefix-stable; a BOS token is emitted when the
    tokenizer has one.
    """
    return (
        "{% if bos_token %}{{ bos_token }}{% endif %}"
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '"
        + end_of_turn
        + "\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


def ensure_chat_template(tokenizer: Any) -> bool:
    """Install the default ChatML template when the tokenizer has none; True when installed.

    The end-of-turn marker is ``<|im_end|>`` when the vocabulary has it as a token, else the
    tokenizer's EOS token, so generation stops on a token the model already knows.
    """
    if getattr(tokenizer, "chat_template", None):
        return False
    vocab = tokenizer.get_vocab()
    if "<|im_end|>" in vocab:
        end = "<|im_end|>"
    elif tokenizer.eos_token:
        end = tokenizer.eos_token
    else:
        raise MongarsError(
            "base_model: the tokenizer has no chat template and no EOS token; "
            "add a chat_template to tokenizer_config.json"
        )
    tokenizer.chat_template = default_chat_template(end)
    return True


# ---------------------------------------------------------------------------- records


def check_messages(messages: Any, where: str) -> list[dict[str, str]]:
    """Refuse a message list the label mask cannot handle, naming the record."""
    if not isinstance(messages, list) or not messages:
        raise MongarsError(f"datasets: {where}: messages must be a non-empty list")
    for message in messages:
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise MongarsError(
                f"datasets: {where}: each message needs role (system|user|assistant) and "
                "string content"
            )
    conversation = [m for m in messages if m["role"] != "system"]
    if not conversation or conversation[0]["role"] != "user":
        raise MongarsError(f"datasets: {where}: the first non-system message must be the user's")
    if not any(m["role"] == "assistant" for m in messages):
        raise MongarsError(f"datasets: {where}: has no assistant message to learn from")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def corpus_record_to_chat(kind: str, record: dict[str, Any], where: str) -> dict[str, Any]:
    """Turn an instruction/reasoning/conversation corpus record into a chat record."""
    try:
        if kind == "instruction":
            prompt = record["instruction"]
            if record.get("input"):
                prompt = f"{prompt}\n\n{record['input']}"
            messages = [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": record["output"]},
            ]
        elif kind == "reasoning":
            messages = [
                {"role": "user", "content": record["question"]},
                {
                    "role": "assistant",
                    "content": f"{record['reasoning']}\n\n{record['answer']}",
                },
            ]
        elif kind == "conversation":
            messages = record["messages"]
        else:
            raise MongarsError(f"datasets: {kind!r} corpora have no chat form")
    except (KeyError, TypeError) as error:
        raise MongarsError(
            f"datasets: {where}: missing field {error} for a {kind} record"
        ) from None
    return {
        "id": str(record.get("id", "")),
        "module": f"corpus/{kind}",
        "source": str(record.get("source", "")),
        "messages": check_messages(messages, where),
    }


def load_module_records(datasets_dir: Path, module: str, split: str) -> list[dict[str, Any]]:
    """The chat records of ``module`` for ``split`` (train or val)."""
    path = datasets_dir / "modules" / module / f"{split}.jsonl"
    if not path.is_file():
        available = sorted(p.name for p in (datasets_dir / "modules").glob("*") if p.is_dir())
        raise MongarsError(
            f"module: {datasets_dir}/modules/{module}/{split}.jsonl is missing; "
            f"modules in this datasets artifact: {', '.join(available) or 'none'}"
        )
    records = []
    for number, record in enumerate(read_jsonl(path), start=1):
        where = f"{path}:{number}"
        records.append(
            {
                "id": str(record.get("id", "")),
                "module": str(record.get("module", module)),
                "source": str(record.get("source", "")),
                "messages": check_messages(record.get("messages"), where),
            }
        )
    return records


def load_french_records(datasets_dir: Path, split: str) -> list[dict[str, Any]]:
    """Chat records converted from every French corpus present (instruction, reasoning, ...)."""
    records = []
    for kind in CORPUS_KINDS:
        path = datasets_dir / "corpora" / kind / f"{split}.jsonl"
        if not path.is_file():
            continue
        for number, record in enumerate(read_jsonl(path), start=1):
            records.append(corpus_record_to_chat(kind, record, f"{path}:{number}"))
    return records


def french_count(module_count: int, ratio: float) -> int:
    """How many French records make them ``ratio`` of the mix with ``module_count`` records.

    ``ratio`` is a validated fraction, 0 <= ratio < 1: a ratio or a count of 0 gives 0.
    """
    return round(module_count * ratio / (1.0 - ratio))


def mix_records(
    module_records: Sequence[dict[str, Any]],
    french_records: Sequence[dict[str, Any]],
    ratio: float,
    seed: int,
) -> list[dict[str, Any]]:
    """Module records plus a seeded sample of French records (all of them if there are fewer)."""
    wanted = min(french_count(len(module_records), ratio), len(french_records))
    pool = sorted(french_records, key=lambda r: (r["module"], r["id"]))
    chosen = random.Random(seed).sample(pool, wanted) if wanted else []
    return [*module_records, *chosen]


# ---------------------------------------------------------------------------- rendering


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )
    if not isinstance(text, str):
        raise MongarsError("base_model: the chat template did not render to text")
    return text


def assistant_spans(
    tokenizer: Any, messages: list[dict[str, str]]
) -> tuple[str, list[tuple[int, int]]]:
    """Render a conversation; return the text and the character spans of the assistant turns.

    A span covers the assistant's rendered turn (content and end-of-turn marker) without the
    trailing whitespace the template puts between turns.
    """
    full_text = _render(tokenizer, messages, generation_prompt=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:index], generation_prompt=True)
        with_turn = _render(tokenizer, messages[: index + 1], generation_prompt=False)
        if not with_turn.startswith(prompt) or not full_text.startswith(with_turn):
            raise MongarsError(
                "base_model: the chat template is not prefix-stable (rendering a conversation "
                "prefix is not a prefix of the whole), so assistant tokens cannot be located; "
                "use a template that appends each turn, or remove chat_template to get ChatML"
            )
        turn = with_turn[len(prompt) :].rstrip()
        if turn:
            spans.append((len(prompt), len(prompt) + len(turn)))
    return full_text, spans


@dataclass(frozen=True)
class TokenizedChat:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def tokenize_chat(
    tokenizer: Any, messages: list[dict[str, str]], max_seq_length: int
) -> TokenizedChat | None:
    """Token ids and labels (-100 outside assistant turns), truncated; None if none is trained."""
    if not getattr(tokenizer, "is_fast", False):
        raise MongarsError(
            "base_model: the tokenizer is not a fast tokenizer; the label mask needs token "
            "offsets (save the model with a tokenizer.json)"
        )
    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = list(encoded["input_ids"])
    labels = [IGNORE_INDEX] * len(input_ids)
    span_index = 0
    for position, (start, end) in enumerate(encoded["offset_mapping"]):
        while span_index < len(spans) and spans[span_index][1] <= start:
            span_index += 1
        if span_index == len(spans):
            break
        span_start, span_end = spans[span_index]
        if end > span_start and start < span_end:
            labels[position] = input_ids[position]
    result = TokenizedChat(input_ids[:max_seq_length], labels[:max_seq_length])
    return result if result.trained_tokens else None


@dataclass(frozen=True)
class TokenizedSplit:
    examples: list[TokenizedChat]
    records: int
    dropped_empty: int  # records whose assistant turns were cut off by max_seq_length
    truncated: int

    @property
    def tokens(self) -> int:
        return sum(len(example.input_ids) for example in self.examples)


def tokenize_records(
    tokenizer: Any, records: Sequence[dict[str, Any]], max_seq_length: int
) -> TokenizedSplit:
    """Tokenize a split, dropping records with no assistant token left after truncation."""
    examples, dropped, truncated = [], 0, 0
    for record in records:
        example = tokenize_chat(tokenizer, record["messages"], max_seq_length)
        if example is None:
            dropped += 1
            continue
        if len(example.input_ids) == max_seq_length:
            truncated += 1
        examples.append(example)
    return TokenizedSplit(examples, len(records), dropped, truncated)


class ChatDataset:
    """A map-style dataset of pre-tokenized chats for the Trainer (list-backed, no copies)."""

    def __init__(self, examples: Sequence[TokenizedChat]) -> None:
        self._examples = list(examples)

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        example = self._examples[index]
        return {"input_ids": example.input_ids, "labels": example.labels}


class ChatCollator:
    """Right-pads a batch: pad id in input_ids, -100 in labels, 0 in the attention mask."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(feature["input_ids"]) for feature in features)
        input_ids, labels, attention = [], [], []
        for feature in features:
            length = len(feature["input_ids"])
            pad = width - length
            input_ids.append(list(feature["input_ids"]) + [self.pad_token_id] * pad)
            labels.append(list(feature["labels"]) + [IGNORE_INDEX] * pad)
            attention.append([1] * length + [0] * pad)
        return {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "attention_mask": torch.tensor(attention, dtype=torch.long),
        }
