"""Chat records, French mixing, and the assistant-only label mask on several templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.tiny_model import build_tokenizer
from monGARS.mlops.training.common.chat_data import (
    IGNORE_INDEX,
    ChatCollator,
    assistant_spans,
    corpus_record_to_chat,
    default_chat_template,
    ensure_chat_template,
    french_count,
    load_french_records,
    load_module_records,
    mix_records,
    tokenize_chat,
)

CONVERSATION = [
    {"role": "system", "content": "Tu es monGARS."},
    {"role": "user", "content": "Bonjour, ça va ?"},
    {"role": "assistant", "content": "Très bien, merci !"},
    {"role": "user", "content": "Et le GPU ?"},
    {"role": "assistant", "content": "Il est chargé."},
]

# Llama-3 style: headers, trimmed content, <|eot_id|> closing each turn.
LLAMA3_STYLE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim "
    "+ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)
# Not prefix-stable: the last message is rendered differently from the earlier ones.
UNSTABLE = (
    "{% for m in messages %}{% if loop.last %}[LAST]{% endif %}"
    "{{ m['role'] }}: {{ m['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def _trained_text(tokenizer, example) -> str:
    ids = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != -100]
    return tokenizer.decode(ids)


def test_chatml_mask_keeps_assistant_turns_and_end_marker(tokenizer) -> None:
    example = tokenize_chat(tokenizer, CONVERSATION, 1024)
    assert (
        _trained_text(tokenizer, example) == "Très bien, merci !<|im_end|>Il est chargé.<|im_end|>"
    )
    # Labels equal the ids where kept: the model shifts them itself.
    for token, label in zip(example.input_ids, example.labels, strict=True):
        assert label in (IGNORE_INDEX, token)


def test_mask_follows_another_prefix_stable_template(tokenizer) -> None:
    tokenizer = build_tokenizer()
    tokenizer.chat_template = LLAMA3_STYLE
    example = tokenize_chat(tokenizer, CONVERSATION, 1024)
    assert (
        _trained_text(tokenizer, example) == "Très bien, merci !<|eot_id|>Il est chargé.<|eot_id|>"
    )


def test_template_that_is_not_prefix_stable_is_refused() -> None:
    tokenizer = build_tokenizer()
    tokenizer.chat_template = UNSTABLE
    with pytest.raises(MongarsError, match="not prefix-stable"):
        assistant_spans(tokenizer, CONVERSATION)


def test_default_template_installed_only_when_missing() -> None:
    tokenizer = build_tokenizer()
    assert not ensure_chat_template(tokenizer)
    tokenizer.chat_template = None
    assert ensure_chat_template(tokenizer)
    assert tokenizer.chat_template == default_chat_template("<|im_end|>")
    text, spans = assistant_spans(tokenizer, CONVERSATION[:3])
    assert text.endswith("<|im_start|>assistant\nTrès bien, merci !<|im_end|>\n")
    assert [text[a:b] for a, b in spans] == ["Très bien, merci !<|im_end|>"]


def test_default_template_falls_back_to_eos_without_im_end() -> None:
    template = default_chat_template("<|end_of_text|>")
    tokenizer = build_tokenizer()
    tokenizer.chat_template = template
    example = tokenize_chat(tokenizer, CONVERSATION[:3], 1024)
    assert _trained_text(tokenizer, example) == "Très bien, merci !<|end_of_text|>"


def test_truncation_and_records_without_trainable_tokens(tokenizer) -> None:
    full = tokenize_chat(tokenizer, CONVERSATION, 1024)
    cut = tokenize_chat(tokenizer, CONVERSATION, len(full.input_ids) - 3)
    assert len(cut.input_ids) == len(full.input_ids) - 3
    assert cut.labels == full.labels[: len(cut.labels)]
    # Cut before the first assistant token: nothing to learn, the record is dropped.
    first = full.labels.index(next(label for label in full.labels if label != IGNORE_INDEX))
    assert tokenize_chat(tokenizer, CONVERSATION, first) is None


def test_collator_masks_padding(tokenizer) -> None:
    short = tokenize_chat(tokenizer, CONVERSATION[:3], 1024)
    long = tokenize_chat(tokenizer, CONVERSATION, 1024)
    features = [{"input_ids": e.input_ids, "labels": e.labels} for e in (short, long)]
    batch = ChatCollator(tokenizer.pad_token_id)(features)
    width = len(long.input_ids)
    assert batch["input_ids"].shape == (2, width)
    pad = width - len(short.input_ids)
    assert batch["attention_mask"][0, -pad:].tolist() == [0] * pad
    assert batch["labels"][0, -pad:].tolist() == [IGNORE_INDEX] * pad
    assert batch["input_ids"][0, -pad:].tolist() == [tokenizer.pad_token_id] * pad
    assert batch["attention_mask"][1].tolist() == [1] * width


def test_corpus_records_become_chats() -> None:
    instruction = corpus_record_to_chat(
        "instruction",
        {"id": "i", "instruction": "Traduis.", "input": "Hello", "output": "Bonjour"},
        "x",
    )
    assert instruction["messages"] == [
        {"role": "user", "content": "Traduis.\n\nHello"},
        {"role": "assistant", "content": "Bonjour"},
    ]
    reasoning = corpus_record_to_chat(
        "reasoning", {"id": "r", "question": "2+2 ?", "reasoning": "2 et 2.", "answer": "4"}, "x"
    )
    assert reasoning["messages"][1]["content"] == "2 et 2.\n\n4"
    with pytest.raises(MongarsError, match="missing field 'output'"):
        corpus_record_to_chat("instruction", {"instruction": "x"}, "f.jsonl:3")


def _write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_loading_names_the_bad_line(tmp_path: Path) -> None:
    good = {"id": "a", "messages": CONVERSATION[1:3]}
    _write(tmp_path / "modules" / "m" / "train.jsonl", [good, {"id": "b", "messages": []}])
    with pytest.raises(MongarsError, match=r"train.jsonl:2: messages must be a non-empty list"):
        load_module_records(tmp_path, "m", "train")
    with pytest.raises(MongarsError, match="modules in this datasets artifact: m"):
        load_module_records(tmp_path, "other", "train")
    no_answer = {"id": "c", "messages": CONVERSATION[1:2]}
    _write(tmp_path / "modules" / "m" / "val.jsonl", [no_answer])
    with pytest.raises(MongarsError, match="no assistant message"):
        load_module_records(tmp_path, "m", "val")


def test_french_mix_ratio(sample_corpus_dir: Path, tmp_path: Path) -> None:
    total = 0
    for kind in ("instruction", "reasoning", "conversation"):
        lines = (sample_corpus_dir / f"{kind}.jsonl").read_text(encoding="utf-8").splitlines()
        records = [json.loads(x) for x in lines if x.strip()][:6]
        total += len(records)
        _write(tmp_path / "corpora" / kind / "train.jsonl", records)
    french = load_french_records(tmp_path, "train")
    assert total == 18
    assert len(french) == total and {r["module"] for r in french} == {
        "corpus/instruction",
        "corpus/reasoning",
        "corpus/conversation",
    }
    module = [{"id": f"m{i}", "module": "m", "messages": CONVERSATION} for i in range(12)]
    assert french_count(12, 0.2) == 3 and french_count(12, 0.5) == 12 and french_count(12, 0) == 0
    mixed = mix_records(module, french, 0.2, seed=1)
    assert len(mixed) == 15 and mixed[:12] == module
    assert mix_records(module, french, 0.2, seed=1) == mixed  # seeded
    assert mix_records(module, french, 0.9, seed=1)[12:] != []  # capped at what exists
    assert len(mix_records(module, french, 0.9, seed=1)) == 12 + 18
    assert mix_records(module, french, 0.0, seed=1) == module
