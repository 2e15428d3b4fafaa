"""The held-out items every model of a module is scored on, tokenised once.

Items come from the module's validation split (``modules/<module>/val.jsonl``), in file order, the
first ``max_examples`` whose last turn is the assistant's. They are tokenised with the *tuned*
model's tokenizer and chat template, and those same token ids go to every model — the base, the
tuned GGUF, the tuned HF model, the champion — so the figures compare models, never tokenisations
(the export stage proves llama.cpp tokenises like HF: ``export/verify.py``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.common.chat_data import IGNORE_INDEX, check_messages, tokenize_chat
from monGARS.mlops.training.common.jsonl import read_jsonl


@dataclass(frozen=True)
class EvalItem:
    """One held-out conversation: the prompt, the reference answer, and its tokens."""

    record_id: str
    prompt_ids: list[int]  # up to and including the assistant header
    input_ids: list[int]  # the whole conversation (prompt + reference answer), truncated
    labels: list[int]  # IGNORE_INDEX outside the assistant turns
    reference: str
    fact: dict[str, Any] | None


def val_path(datasets_dir: str | Path, module: str) -> Path:
    return Path(datasets_dir) / "modules" / module / "val.jsonl"


def items_digest(items: list[EvalItem]) -> str:
    """What the items are, in 16 hex digits: equal digests mean the same questions and tokens."""
    payload = json.dumps([[i.record_id, i.input_ids] for i in items], separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def load_items(
    datasets_dir: str | Path,
    module: str,
    tokenizer: Any,
    *,
    max_examples: int,
    max_seq_length: int,
) -> list[EvalItem]:
    """The module's held-out items (see module doc); refuses a module with no usable item."""
    path = val_path(datasets_dir, module)
    if not path.is_file():
        raise MongarsError(
            f"evaluate: {path} is missing; the datasets artifact has no validation split for "
            f"module {module} (raise val_split)"
        )
    items: list[EvalItem] = []
    for number, record in enumerate(read_jsonl(path), start=1):
        if len(items) >= max_examples:
            break
        messages = check_messages(record.get("messages"), f"{path}:{number}")
        if messages[-1]["role"] != "assistant" or len(messages) < 2:
            continue
        tokens = tokenize_chat(tokenizer, messages, max_seq_length)
        if tokens is None:
            continue
        prompt_text = tokenizer.apply_chat_template(
            messages[:-1], tokenize=False, add_generation_prompt=True
        )
        prompt_ids = list(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
        if len(prompt_ids) >= max_seq_length:
            continue
        items.append(
            EvalItem(
                record_id=str(record.get("id", number)),
                prompt_ids=prompt_ids,
                input_ids=tokens.input_ids,
                labels=tokens.labels,
                reference=messages[-1]["content"],
                fact=record.get("fact") if isinstance(record.get("fact"), dict) else None,
            )
        )
    if not items:
        raise MongarsError(
            f"evaluate: {path} has no conversation ending with an assistant turn that fits "
            f"max_seq_length={max_seq_length}; raise val_split or max_seq_length"
        )
    return items


def scored_positions(item: EvalItem) -> list[int]:
    """Positions whose token is an assistant token (predicted from the position before)."""
    return [t for t in range(1, len(item.input_ids)) if item.labels[t] != IGNORE_INDEX]
