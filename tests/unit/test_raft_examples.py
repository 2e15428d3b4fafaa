"""RAFT example construction: oracle rate, distractors, hard negatives, questions from the data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.raft.data import (
    Question,
    build_examples,
    clip_document,
    hard_negatives,
    load_questions,
    question_order,
    render_fact,
)
from monGARS.mlops.training.raft.format import (
    BEGIN_QUOTE,
    DECLINE_ANSWER,
    SYSTEM_PROMPT,
    parse_answer,
)


def _questions(count: int) -> tuple[list[Question], list[str]]:
    questions = [
        Question(
            id=f"q{i}",
            source="module",
            question=f"Que fait la fonction f{i} ?",
            answer=f"La fonction f{i} calcule la valeur {i}.",
            oracle=f"qualname: f{i}\ndocstring: calcule la valeur {i}",
        )
        for i in range(count)
    ]
    return questions, [q.oracle for q in questions]


def test_oracle_rate_follows_p_over_many_draws() -> None:
    questions, documents = _questions(20)
    for p in (0.0, 0.3, 0.8, 1.0):
        examples = build_examples(
            questions, documents, k=4, oracle_probability=p, count=4000, seed=7
        )
        rate = sum(e.oracle_index is not None for e in examples) / len(examples)
        # 4000 Bernoulli(p) draws: 4 standard deviations is at most 0.032.
        assert abs(rate - p) <= 4 * math.sqrt(p * (1 - p) / 4000) + 1e-9, (p, rate)
        # Every question is drawn equally often (200 times each).
        counts = {q.id: 0 for q in questions}
        for example in examples:
            counts[example.question_id] += 1
        assert set(counts.values()) == {200}


def test_examples_have_k_documents_and_never_the_oracle_as_a_distractor() -> None:
    questions, documents = _questions(12)
    examples = build_examples(questions, documents, k=5, oracle_probability=0.5, count=600, seed=1)
    positions = set()
    for example in examples:
        oracle = next(q.oracle for q in questions if q.id == example.question_id)
        assert len(example.documents) == 5 and len(set(example.documents)) == 5
        present = [i for i, doc in enumerate(example.documents) if doc == oracle]
        if example.oracle_index is None:
            assert present == []  # k distractors, none of them the oracle
        else:
            assert present == [example.oracle_index]
            positions.add(example.oracle_index)
    assert positions == set(range(5))  # the order is shuffled: the oracle lands everywhere


def test_targets_quote_the_oracle_or_say_it_is_absent() -> None:
    questions, documents = _questions(6)
    examples = build_examples(questions, documents, k=3, oracle_probability=0.5, count=60, seed=3)
    declined = build_examples(
        questions,
        documents,
        k=3,
        oracle_probability=0.0,
        count=6,
        seed=3,
        absent_answer="decline",
    )
    for example in examples:
        parsed = parse_answer(example.target)
        assert parsed.well_formed
        assert parsed.answer == example.answer
        if example.oracle_index is not None:
            assert parsed.quotes and all(q in example.oracle for q in parsed.quotes)
        else:
            assert parsed.no_quote and not parsed.quotes
        messages = example.messages()
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        assert messages[0]["content"] == SYSTEM_PROMPT
        assert example.question in messages[1]["content"]
        assert all(doc in messages[1]["content"] for doc in example.documents)
        assert messages[2]["content"] == example.target
    assert all(parse_answer(e.target).answer == DECLINE_ANSWER for e in declined)


def test_same_seed_same_examples_other_seed_other_draws() -> None:
    questions, documents = _questions(10)
    first = build_examples(questions, documents, k=4, oracle_probability=0.5, count=50, seed=5)
    again = build_examples(questions, documents, k=4, oracle_probability=0.5, count=50, seed=5)
    other = build_examples(questions, documents, k=4, oracle_probability=0.5, count=50, seed=6)
    assert first == again
    assert first != other


def test_count_zero_gives_one_example_per_question_in_order() -> None:
    questions, documents = _questions(7)
    examples = build_examples(questions, documents, k=3, oracle_probability=1.0, count=0, seed=0)
    assert [e.question_id for e in examples] == [q.id for q in questions]


# ---------------------------------------------------------------------------- hard negatives

_VOCAB = ["alpha", "beta", "gamma", "delta", "zeta", "eta", "omega", "psi"]


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A deterministic embedding: word counts over a fixed vocabulary."""
    return np.array(
        [[text.split().count(word) for word in _VOCAB] for text in texts], dtype=np.float32
    )


def test_hard_negatives_are_the_nearest_documents_by_the_embedding_oracle_excluded() -> None:
    question = Question(
        id="q",
        source="retrieval",
        question="alpha beta gamma",
        answer="a",
        oracle="alpha beta gamma delta",  # the nearest document of all: must never be chosen
        also_relevant=frozenset({"alpha beta gamma psi"}),  # another positive: not a distractor
    )
    pool = [
        "omega psi",
        "alpha zeta eta",  # cos 0.33
        "alpha beta gamma psi",
        "alpha beta gamma delta",
        "omega",
        "alpha beta zeta",  # cos 0.67
        "alpha beta gamma",  # cos 1.0
        "eta",
    ]
    ranked = hard_negatives([question], pool, bag_of_words, k=3)
    assert ranked == {"q": ["alpha beta gamma", "alpha beta zeta", "alpha zeta eta"]}
    # Vectors embedded beforehand (the held-out pool reuses the train documents') rank the same.
    given = bag_of_words(pool)
    assert hard_negatives([question], pool, bag_of_words, k=3, document_vectors=given) == ranked
    for rows in (given[:7], np.vstack([given, given[:1]])):  # one row short, one too many
        with pytest.raises(ValueError, match=f"{len(rows)} rows for 8 documents"):
            hard_negatives([question], pool, bag_of_words, k=3, document_vectors=rows)
    examples = build_examples(
        [question], pool, k=3, oracle_probability=1.0, count=20, seed=0, ranked=ranked
    )
    for example in examples:
        assert set(example.documents) == {question.oracle, "alpha beta gamma", "alpha beta zeta"}
    absent = build_examples(
        [question], pool, k=3, oracle_probability=0.0, count=5, seed=0, ranked=ranked
    )
    assert all(set(e.documents) == set(ranked["q"]) for e in absent)


def test_random_distractors_spread_over_the_pool() -> None:
    questions, documents = _questions(30)
    examples = build_examples(questions, documents, k=4, oracle_probability=1.0, count=300, seed=2)
    seen = {doc for e in examples for i, doc in enumerate(e.documents) if i != e.oracle_index}
    assert len(seen) == 30  # every document serves as a distractor somewhere


def test_a_pool_too_small_for_k_is_refused_with_the_field() -> None:
    questions, documents = _questions(3)
    with pytest.raises(MongarsError, match=r"num_documents: 3 needs at least 3 distractor"):
        build_examples(questions, documents, k=3, oracle_probability=0.5, count=0, seed=0)
    with pytest.raises(MongarsError, match="num_documents"):
        hard_negatives(questions, documents, bag_of_words, k=3)


# ---------------------------------------------------------------------------- from the datasets


def _write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )


def test_questions_come_from_module_facts_and_retrieval_records(tmp_path: Path) -> None:
    fact = {
        "type": "function",
        "qualname": "charger",
        "signature": "def charger(path: str) -> Model",
        "parameters": [{"name": "path", "annotation": "str", "default": ""}],
        "docstring": "Charge le modèle.",
        "line": 12,
        "returns": "",
    }
    messages = [
        {"role": "system", "content": "Tu es monGARS."},
        {"role": "user", "content": "Que fait `charger` ?"},
        {"role": "assistant", "content": "Elle charge le modèle."},
        {"role": "user", "content": "Et ensuite ?"},
        {"role": "assistant", "content": "Rien."},
    ]
    _write(
        tmp_path / "modules" / "m" / "train.jsonl",
        [
            {"id": "a", "messages": messages, "fact": fact},
            {"id": "b", "messages": messages[1:3]},  # no fact: no oracle, skipped
        ],
    )
    _write(
        tmp_path / "corpora" / "retrieval" / "train.jsonl",
        [
            {"id": "r1", "query": "Q1 ?", "positives": ["P1.", "P1 bis."], "negatives": ["N1."]},
            {"id": "r2", "query": "Q2 ?", "positives": ["P2."], "negatives": [], "answer": "A2."},
        ],
    )
    found = load_questions(tmp_path, "m", "train", "extractive", 1000)
    by_id = {q.id: q for q in found.questions}
    assert list(by_id) == ["a", "r1", "r2"]
    assert found.skipped["module_without_fact"] == 1
    module_question = by_id["a"]
    assert module_question.question == "Que fait `charger` ?"
    assert module_question.answer == "Elle charge le modèle."  # the first exchange only
    assert module_question.oracle == render_fact(fact)
    assert module_question.oracle.splitlines() == [
        "type: function",
        "qualname: charger",
        "signature: def charger(path: str) -> Model",
        "line: 12",
        "docstring: Charge le modèle.",
        "parameters:",
        "- name: path, annotation: str",
    ]
    assert by_id["r1"].answer == "P1." and by_id["r1"].also_relevant == {"P1 bis."}
    assert by_id["r2"].answer == "A2." and by_id["r2"].oracle == "P2."
    assert set(found.documents) == {module_question.oracle, "P1.", "P1 bis.", "N1.", "P2."}

    only_answers = load_questions(tmp_path, "m", "train", "answer_field", 1000)
    assert [q.id for q in only_answers.questions] == ["a", "r2"]
    assert only_answers.skipped["retrieval_without_answer"] == 1
    assert [q.id for q in load_questions(tmp_path, "m", "train", "off", 1000).questions] == ["a"]
    # One module question at a 50% mix takes one of the two retrieval questions, seeded.
    mixed = load_questions(tmp_path, "m", "train", "extractive", 1000, retrieval_mix_ratio=0.5)
    assert [q.source for q in mixed.questions] == ["module", "retrieval"]
    assert mixed.skipped["retrieval_over_mix_ratio"] == 1
    assert "N1." in mixed.documents  # passages stay distractors even when their query is left out
    assert [
        q.id
        for q in load_questions(
            tmp_path, "m", "train", "extractive", 1000, retrieval_mix_ratio=0.0
        ).questions
    ] == ["a"]


def test_missing_module_is_refused_naming_the_available_ones(tmp_path: Path) -> None:
    _write(tmp_path / "modules" / "m" / "train.jsonl", [])
    with pytest.raises(MongarsError, match=r"module: .*other/train.jsonl is missing.*: m$"):
        load_questions(tmp_path, "other", "train", "off", 100)


def test_documents_are_clipped_at_a_boundary_and_neutralised() -> None:
    text = "mot " * 50
    clipped = clip_document(text, 30)
    assert len(clipped) <= 30 and clipped.endswith("mot")
    assert BEGIN_QUOTE not in clip_document(f"x {BEGIN_QUOTE} y", 100)


# ---------------------------------------------------------------------------- what gets embedded


def test_question_order_visits_each_question_once_per_pass() -> None:
    assert question_order(4, 0, seed=3) == [0, 1, 2, 3]
    sample = question_order(10, 4, seed=3)
    assert len(sample) == len(set(sample)) == 4 and set(sample) <= set(range(10))
    assert question_order(10, 4, seed=3) == sample and question_order(10, 4, seed=4) != sample
    spread = question_order(3, 8, seed=1)  # two whole passes, then two of the third
    assert sorted(spread[:3]) == sorted(spread[3:6]) == [0, 1, 2] and len(set(spread[6:])) == 2
    assert question_order(0, 5, seed=0) == []


def _text_vectors(texts: list[str]) -> np.ndarray:
    """A deterministic embedding of any text: a unit vector seeded by its hash."""
    import hashlib

    rows = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
        rows.append(np.random.default_rng(seed).standard_normal(16))
    return np.asarray(rows, dtype=np.float32)


def test_each_document_and_only_the_visited_questions_are_embedded(tmp_path: Path) -> None:
    """Mining costs an encoder pass per text: the held-out pool reuses the train documents'
    vectors, and a num_examples below the question count embeds only the questions it visits,
    with the same distractors as mining every question."""
    from monGARS.mlops.training.raft.config import load_raft_config
    from monGARS.mlops.training.raft.prepare import prepare_examples

    def records(split: str, count: int) -> list[dict]:
        return [
            {
                "id": f"{split}{i}",
                "messages": [
                    {"role": "user", "content": f"Que fait {split}_f{i} ?"},
                    {"role": "assistant", "content": f"Elle calcule {i}."},
                ],
                "fact": {"type": "function", "qualname": f"{split}_f{i}", "line": i},
            }
            for i in range(count)
        ]

    _write(tmp_path / "modules" / "m" / "train.jsonl", records("train", 20))
    _write(tmp_path / "modules" / "m" / "val.jsonl", records("val", 4))
    embedded: list[str] = []

    def recording(texts: list[str]) -> np.ndarray:
        embedded.extend(texts)
        return _text_vectors(texts)

    settings = {"retrieval_source": "off", "num_documents": 3, "max_heldout_examples": 2}
    config = load_raft_config({**settings, "num_examples": 6, "seed": 11})
    train, heldout, counts = prepare_examples(config, tmp_path, "m", embed=recording)

    documents = load_questions(tmp_path, "m", "train", "off", config.max_document_chars)
    val = load_questions(tmp_path, "m", "val", "off", config.max_document_chars)
    assert counts["heldout_documents"] == len(documents.documents) + len(val.documents)
    visited = {documents.questions[i].question for i in question_order(20, 6, seed=11)}
    assert len(visited) == 6 and len(train) == 6
    asked = [e.question for e in heldout]
    expected = [*documents.documents, *val.documents, *sorted(visited), *asked]
    assert sorted(embedded) == sorted(expected), "a text embedded twice, or an unvisited question"

    ranked_all = hard_negatives(documents.questions, documents.documents, _text_vectors, k=3)
    rebuilt = build_examples(
        documents.questions,
        documents.documents,
        k=3,
        oracle_probability=config.oracle_probability,
        count=6,
        seed=11,
        ranked=ranked_all,
        max_quotes=config.max_quotes,
        absent_answer=config.absent_answer,
    )
    assert train == rebuilt
