"""The SFT label mask at its edges, and the record checks in front of it, by value.

Complements tests/unit/test_sft_chat_data.py (the mask on whole templates): adjacent assistant
turns, templates that break prefix stability in only one of its two ways, the labels' exact ids,
per-split counts, and every refusal of a malformed record naming what is wrong. Cheap on purpose:
these run once per mutant of ``common/chat_data.py`` (tests/mutation.toml).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.tiny_model import build_tokenizer
from monGARS.mlops.training.common.chat_data import (
    ChatCollator,
    ChatDataset,
    assistant_spans,
    check_messages,
    corpus_record_to_chat,
    default_chat_template,
    ensure_chat_template,
    french_count,
    load_french_records,
    load_module_records,
    tokenize_chat,
    tokenize_records,
)

NOT_TRAINED = -100  # the documented label outside assistant turns (PyTorch's ignore_index)
USER = {"role": "user", "content": "Bonjour, ça va ?"}
ANSWER = {"role": "assistant", "content": "Très bien, merci !"}
CONVERSATION = [
    {"role": "system", "content": "Tu es monGARS."},
    USER,
    ANSWER,
    {"role": "user", "content": "Et le GPU ?"},
    {"role": "assistant", "content": "Il est chargé."},
]
# Each turn as "role: content" on its own line.
NO_SEPARATORS = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
PLAIN_TURNS = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"


@pytest.fixture(scope="module")
def shared_tokenizer() -> Any:
    return build_tokenizer()


@pytest.fixture
def tokenizer(shared_tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The tiny tokenizer (ChatML); a test's template change is undone after it."""
    monkeypatch.setattr(shared_tokenizer, "chat_template", shared_tokenizer.chat_template)
    return shared_tokenizer


# ---------------------------------------------------------------------------- the mask


def test_labels_are_the_ids_of_assistant_tokens_and_minus_100_elsewhere(tokenizer: Any) -> None:
    text, _ = assistant_spans(tokenizer, CONVERSATION[:3])
    example = tokenize_chat(tokenizer, CONVERSATION[:3], 1024)
    assert example.input_ids == tokenizer(text, add_special_tokens=False)["input_ids"], (
        "input ids are not the rendered text's tokens (the template already holds the BOS token; "
        "none may be added)"
    )
    assert set(example.labels) - set(example.input_ids) == {NOT_TRAINED}, "untrained label not -100"
    trained = [i for i, label in enumerate(example.labels) if label != NOT_TRAINED]
    assert all(example.labels[i] == example.input_ids[i] for i in trained), "label is not the id"
    # The trained tokens are one run: the answer and its end-of-turn marker.
    assert trained == list(range(trained[0], trained[-1] + 1))
    answer = tokenizer.decode(example.input_ids[trained[0] : trained[-1] + 1])
    assert answer == "Très bien, merci !<|im_end|>"
    assert example.trained_tokens == len(trained), "trained_tokens does not count the labels"


def test_adjacent_assistant_turns_are_both_trained(tokenizer: Any) -> None:
    # A template with no separators: the second answer starts where the first one ends.
    tokenizer.chat_template = NO_SEPARATORS
    messages = [
        {"role": "user", "content": "Question ?"},
        {"role": "assistant", "content": " oui"},
        {"role": "assistant", "content": " non"},
    ]
    text, spans = assistant_spans(tokenizer, messages)
    assert (text, spans) == ("Question ? oui non", [(10, 14), (14, 18)])
    example = tokenize_chat(tokenizer, messages, 64)
    trained = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label >= 0]
    assert tokenizer.decode(trained) == " oui non", (
        "the token opening the second answer (it starts where the first answer ends) lost its label"
    )


def test_a_turn_ending_inside_a_token_leaves_the_next_turns_trained(tokenizer: Any) -> None:
    # No separators: " oui" runs into "merci", so a token ("im") straddles the first answer's end
    # and no token starts exactly where that answer ends.
    tokenizer.chat_template = NO_SEPARATORS
    messages = [
        {"role": "user", "content": "Question ?"},
        {"role": "assistant", "content": " oui"},
        {"role": "user", "content": "merci"},
        {"role": "assistant", "content": " non"},
    ]
    text, spans = assistant_spans(tokenizer, messages)
    assert (text, spans) == ("Question ? ouimerci non", [(10, 14), (19, 23)])
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    overlapping = [any(e > a and s < b for a, b in spans) for s, e in offsets["offset_mapping"]]
    example = tokenize_chat(tokenizer, messages, 64)
    assert [label != NOT_TRAINED for label in example.labels] == overlapping, (
        "labels must be kept exactly on the tokens overlapping an answer: the second answer "
        "lost them once the first one ended inside a token"
    )


def test_an_empty_rendered_turn_has_no_span(tokenizer: Any) -> None:
    tokenizer.chat_template = (
        PLAIN_TURNS + "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    # The template renders "assistant: " + "" + "\n": only whitespace after the prompt.
    messages = [USER, {"role": "assistant", "content": ""}, USER, ANSWER]
    text, spans = assistant_spans(tokenizer, messages)
    assert [text[a:b] for a, b in spans] == ["Très bien, merci !"]


def test_a_template_that_closes_the_conversation_is_refused(tokenizer: Any) -> None:
    # Prefix + turn extends the prompt, but the whole conversation does not extend prefix + turn:
    # "</s>" follows only the last message.
    tokenizer.chat_template = (
        PLAIN_TURNS + "{% if add_generation_prompt %}{{ 'assistant: ' }}{% else %}</s>{% endif %}"
    )
    with pytest.raises(MongarsError, match="not prefix-stable"):
        assistant_spans(tokenizer, CONVERSATION)


def test_a_generation_prompt_unlike_the_rendered_turn_is_refused(tokenizer: Any) -> None:
    # The conversation extends each prefix, but the turn does not extend the generation prompt
    # ("assistant:\n" there, "assistant: " in the turn): the turn's start is unknown.
    tokenizer.chat_template = (
        PLAIN_TURNS + "{% if add_generation_prompt %}{{ 'assistant:\\n' }}{% endif %}"
    )
    with pytest.raises(MongarsError, match="not prefix-stable"):
        assistant_spans(tokenizer, CONVERSATION)


def test_a_template_that_does_not_render_text_is_refused(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokenizer, "apply_chat_template", lambda *args, **kwargs: [1, 2, 3])
    with pytest.raises(MongarsError, match="did not render to text"):
        assistant_spans(tokenizer, CONVERSATION)


class _Undeclared:
    """The tiny tokenizer with no ``is_fast`` attribute: whether it gives offsets is unknown."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "is_fast":
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner(*args, **kwargs)


def test_a_tokenizer_not_known_to_be_fast_is_refused(tokenizer: Any) -> None:
    for slow in (SimpleNamespace(is_fast=False), _Undeclared(tokenizer)):
        with pytest.raises(MongarsError, match="not a fast tokenizer"):
            tokenize_chat(slow, CONVERSATION, 64)


def test_split_counts_dropped_and_truncated_records(tokenizer: Any) -> None:
    short = tokenize_chat(tokenizer, CONVERSATION[1:3], 1024)
    limit = len(short.input_ids) + 4
    long_prompt = {"role": "system", "content": "Réponds avec soin. " * 20}
    records = [
        {"messages": CONVERSATION[1:3]},  # fits
        {"messages": CONVERSATION[1:]},  # cut after its first answer
        {"messages": [long_prompt, USER, ANSWER]},  # the answer is past the limit: dropped
        {"messages": CONVERSATION[1:3]},  # after the dropped one: still kept
    ]
    split = tokenize_records(tokenizer, records, limit)
    assert (split.records, split.dropped_empty, split.truncated) == (4, 1, 1), (
        f"records/dropped/truncated {split.records}/{split.dropped_empty}/{split.truncated}, "
        "expected 4/1/1"
    )
    lengths = [len(example.input_ids) for example in split.examples]
    assert lengths == [len(short.input_ids), limit, len(short.input_ids)]
    assert split.tokens == sum(lengths)
    # Examples and splits are values: a field cannot be rebound after tokenizing.
    with pytest.raises(dataclasses.FrozenInstanceError):
        split.examples[0].labels = []  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        split.dropped_empty = 0  # type: ignore[misc]
    dataset = ChatDataset(split.examples)
    assert len(dataset) == 3
    assert dataset[1] == {
        "input_ids": split.examples[1].input_ids,
        "labels": split.examples[1].labels,
    }


def test_collator_attends_to_every_real_token(tokenizer: Any) -> None:
    features = [{"input_ids": [5, 6], "labels": [-100, 6]}, {"input_ids": [7], "labels": [7]}]
    batch = ChatCollator(tokenizer.pad_token_id)(features)
    assert batch["attention_mask"].tolist() == [[1, 1], [1, 0]]
    assert batch["input_ids"].tolist() == [[5, 6], [7, tokenizer.pad_token_id]]
    assert batch["labels"].tolist() == [[-100, 6], [7, -100]]


# ---------------------------------------------------------------------------- the template


def test_default_template_ends_turns_with_eos_without_im_end() -> None:
    vocabulary = SimpleNamespace(chat_template=None, get_vocab=dict, eos_token="</s>")
    assert ensure_chat_template(vocabulary)
    assert vocabulary.chat_template == default_chat_template("</s>")
    with pytest.raises(MongarsError, match="no chat template and no EOS token"):
        ensure_chat_template(SimpleNamespace(chat_template="", get_vocab=dict, eos_token=None))


# ---------------------------------------------------------------------------- records


@pytest.mark.parametrize(
    ("messages", "complaint"),
    [
        ({"role": "user"}, "messages must be a non-empty list"),
        ([], "messages must be a non-empty list"),
        (["Bonjour"], "each message needs role"),
        ([{"role": "tool", "content": "x"}, ANSWER], "each message needs role"),
        ([{"role": "user", "content": 3}, ANSWER], "each message needs role"),
        ([{"role": "system", "content": "x"}], "the first non-system message must be the user's"),
        ([ANSWER, USER], "the first non-system message must be the user's"),
        ([USER, USER], "has no assistant message to learn from"),
    ],
)
def test_malformed_messages_are_refused_naming_the_record(messages: Any, complaint: str) -> None:
    with pytest.raises(MongarsError, match=f"^datasets: f.jsonl:7: {complaint}"):
        check_messages(messages, "f.jsonl:7")


def test_checked_messages_keep_role_and_content_only() -> None:
    messages = [{"role": "system", "content": "S", "name": "x"}, USER, {**ANSWER, "weight": 0}]
    assert check_messages(messages, "here") == [
        {"role": "system", "content": "S"},
        USER,
        ANSWER,
    ]


def test_corpus_records_of_each_kind_become_chat_records() -> None:
    instruction = corpus_record_to_chat(
        "instruction", {"instruction": "Résume.", "output": "Court.", "source": "s"}, "w"
    )
    assert instruction == {
        "id": "",
        "module": "corpus/instruction",
        "source": "s",
        "messages": [
            {"role": "user", "content": "Résume."},  # no input: the instruction alone
            {"role": "assistant", "content": "Court."},
        ],
    }
    conversation = corpus_record_to_chat("conversation", {"id": 4, "messages": [USER, ANSWER]}, "w")
    assert conversation["messages"] == [USER, ANSWER] and conversation["id"] == "4"
    assert conversation["module"] == "corpus/conversation"
    for kind in ("retrieval", "code"):  # sorting after and before the known kinds
        with pytest.raises(MongarsError, match=f"'{kind}' corpora have no chat form"):
            corpus_record_to_chat(kind, {"query": "q", "messages": [USER, ANSWER]}, "w")
    with pytest.raises(MongarsError, match=r"w: missing field 'answer' for a reasoning record"):
        corpus_record_to_chat("reasoning", {"question": "q", "reasoning": "r"}, "w")


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_module_records_fill_missing_fields_and_list_only_module_folders(tmp_path: Path) -> None:
    with pytest.raises(MongarsError, match=r"modules in this datasets artifact: none$"):
        load_module_records(tmp_path, "m", "train")
    chat = {"messages": [USER, ANSWER]}
    _write(tmp_path / "modules" / "m" / "train.jsonl", [json.dumps(chat)])
    _write(tmp_path / "modules" / "notes.txt", ["not a module"])
    assert load_module_records(tmp_path, "m", "train") == [
        {"id": "", "module": "m", "source": "", "messages": [USER, ANSWER]}
    ]
    with pytest.raises(MongarsError, match=r"modules in this datasets artifact: m$"):
        load_module_records(tmp_path, "m", "val")


def test_french_records_name_the_bad_line(tmp_path: Path) -> None:
    good = json.dumps({"question": "q", "reasoning": "r", "answer": "a"})
    _write(tmp_path / "corpora" / "reasoning" / "val.jsonl", [good, json.dumps({"question": "q"})])
    with pytest.raises(MongarsError, match=r"reasoning/val.jsonl:2: missing field"):
        load_french_records(tmp_path, "val")


def test_french_count_rounds_to_the_nearest_record() -> None:
    # 7 module records at 20 %: 7 * 0.2 / 0.8 = 1.75 French records, so 2 (2 of 9 is 22 %).
    assert french_count(7, 0.2) == 2, "the French share is rounded down instead of to nearest"
    assert french_count(0, 0.5) == 0 and french_count(7, 0.0) == 0
