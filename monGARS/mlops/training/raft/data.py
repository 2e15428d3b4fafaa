"""RAFT examples: questions with their oracle document, mixed among distractor documents.

Questions come from two places (see docs/raft.md):

- the module's chat records: the first user turn is the question, the assistant's reply the
  reference answer, and the record's ``fact`` (the mined code fact the answer was derived from),
  rendered as ``key: value`` lines, the oracle document;
- retrieval records (``corpora/retrieval``): the query is the question and the first positive
  passage the oracle; the reference answer is the record's ``answer`` field when it has one, else
  (``retrieval_source=extractive``) the positive passage itself.

Each example shows ``k`` documents: with probability P the oracle and k-1 distractors, otherwise k
distractors, in a seeded random order. Distractors are the documents an encoder ranks nearest to
the question (what a retriever would put in front of the model at inference), never the oracle nor
another passage that answers the same question; without an encoder they are drawn at random.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.common.chat_data import check_messages, french_count
from monGARS.mlops.training.common.jsonl import read_jsonl
from monGARS.mlops.training.common.retrieval_eval import cosine_similarity, rank_passages
from monGARS.mlops.training.raft.format import (
    DECLINE_ANSWER,
    SYSTEM_PROMPT,
    neutralise,
    render_answer,
    select_quotes,
)

Embed = Callable[[list[str]], np.ndarray]

# Fact keys shown first, in this order (what the fact is, then where, then what it says).
_KEY_ORDER = (
    "type",
    "module",
    "path",
    "qualname",
    "name",
    "kind",
    "signature",
    "line",
    "bases",
    "docstring",
    "parameters",
    "returns",
    "fields",
    "methods",
    "internal",
    "external",
    "importers",
    "framework",
    "calls",
)


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, dict):  # a parameter or call site: its name first, then the details
        keys = sorted(value, key=lambda k: (k not in ("name", "function"), k))
        return ", ".join(
            f"{k}: {_scalar(value[k])}" for k in keys if value[k] not in ("", None, [])
        )
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list) else str(value)


def render_fact(fact: dict[str, Any]) -> str:
    """A code fact as a document: one ``key: value`` line per field, list items on ``- `` lines."""
    keys = [k for k in _KEY_ORDER if k in fact] + sorted(k for k in fact if k not in _KEY_ORDER)
    lines = []
    for key in keys:
        value = fact[key]
        if value in ("", None, [], {}):
            continue
        if isinstance(value, list) and any(isinstance(item, dict) for item in value):
            lines.append(f"{key}:")
            lines.extend(f"- {_scalar(item)}" for item in value)
        elif isinstance(value, list):
            lines.append(f"{key}: {', '.join(_scalar(item) for item in value)}")
        else:
            lines.append(f"{key}: {_scalar(value)}")
    return "\n".join(lines)


def clip_document(text: str, max_chars: int) -> str:
    """Cut a document to ``max_chars``, at a line or word boundary when one is close."""
    text = neutralise(text.strip())
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    for boundary in ("\n", " "):
        position = cut.rfind(boundary)
        if position >= max_chars // 2:
            return cut[:position].rstrip()
    return cut


# ---------------------------------------------------------------------------- questions


@dataclass(frozen=True)
class Question:
    """A question, its reference answer and the document that holds the answer."""

    id: str
    source: str  # "module" or "retrieval"
    question: str
    answer: str
    oracle: str
    # Other documents that also answer it (a query's other positives): never distractors.
    also_relevant: frozenset[str] = field(default_factory=frozenset)


@dataclass
class QuestionSet:
    questions: list[Question]
    # Every document of the split (oracles, other positives, retrieval negatives), deduplicated.
    documents: list[str]
    skipped: dict[str, int]


def _first_exchange(messages: list[dict[str, str]]) -> tuple[str, str] | None:
    for index, message in enumerate(messages):
        if message["role"] == "user":
            following = messages[index + 1] if index + 1 < len(messages) else None
            if following and following["role"] == "assistant":
                return message["content"], following["content"]
            return None
    return None


def module_questions(
    datasets_dir: Path, module: str, split: str, max_chars: int
) -> tuple[list[Question], dict[str, int]]:
    """Questions from the module's chat records that carry a ``fact`` (the oracle)."""
    path = datasets_dir / "modules" / module / f"{split}.jsonl"
    if not path.is_file():
        available = sorted(p.name for p in (datasets_dir / "modules").glob("*") if p.is_dir())
        raise MongarsError(
            f"module: {path} is missing; modules in this datasets artifact: "
            f"{', '.join(available) or 'none'}"
        )
    questions, skipped = [], {"module_without_fact": 0, "module_without_exchange": 0}
    for number, record in enumerate(read_jsonl(path), start=1):
        messages = check_messages(record.get("messages"), f"{path}:{number}")
        fact = record.get("fact")
        if not isinstance(fact, dict) or not fact:
            skipped["module_without_fact"] += 1
            continue
        exchange = _first_exchange(messages)
        if exchange is None or not exchange[0].strip() or not exchange[1].strip():
            skipped["module_without_exchange"] += 1
            continue
        oracle = clip_document(render_fact(fact), max_chars)
        questions.append(
            Question(
                id=str(record.get("id", f"{module}-{split}-{number}")),
                source="module",
                question=neutralise(exchange[0].strip()),
                answer=neutralise(exchange[1].strip()),
                oracle=oracle,
            )
        )
    return questions, skipped


def retrieval_records(
    datasets_dir: Path, split: str, mode: str, max_chars: int
) -> tuple[list[Question], list[str], dict[str, int]]:
    """Questions from retrieval records with a reference answer, and every passage as a document."""
    path = datasets_dir / "corpora" / "retrieval" / f"{split}.jsonl"
    skipped = {"retrieval_without_answer": 0, "retrieval_malformed": 0}
    if not path.is_file():
        return [], [], skipped
    questions, passages = [], []
    for number, record in enumerate(read_jsonl(path), start=1):
        query, positives = record.get("query"), record.get("positives")
        negatives = record.get("negatives") or []
        if (
            not isinstance(query, str)
            or not query.strip()
            or not isinstance(positives, list)
            or not positives
            or not all(isinstance(p, str) and p.strip() for p in [*positives, *negatives])
        ):
            skipped["retrieval_malformed"] += 1
            continue
        clipped = [clip_document(p, max_chars) for p in positives]
        passages.extend(clipped)
        passages.extend(clip_document(n, max_chars) for n in negatives)
        answer = record.get("answer")
        if not (isinstance(answer, str) and answer.strip()):
            if mode != "extractive":
                skipped["retrieval_without_answer"] += 1
                continue
            answer = positives[0]
        questions.append(
            Question(
                id=str(record.get("id", f"retrieval-{split}-{number}")),
                source="retrieval",
                question=neutralise(query.strip()),
                answer=neutralise(" ".join(answer.split())),
                oracle=clipped[0],
                also_relevant=frozenset(clipped[1:]),
            )
        )
    return questions, passages, skipped


def load_questions(
    datasets_dir: Path,
    module: str,
    split: str,
    retrieval_source: str,
    max_chars: int,
    *,
    retrieval_mix_ratio: float = 1.0,
    seed: int = 0,
) -> QuestionSet:
    """The split's questions (module first, then retrieval) and its document pool.

    Retrieval questions are a seeded sample making up ``retrieval_mix_ratio`` of the questions
    (all of them at 1.0); every retrieval passage stays in the pool as a possible distractor.
    """
    questions, skipped = module_questions(datasets_dir, module, split, max_chars)
    passages: list[str] = []
    if retrieval_source != "off":
        extra, passages, more = retrieval_records(datasets_dir, split, retrieval_source, max_chars)
        skipped.update(more)
        if retrieval_mix_ratio < 1.0:
            wanted = min(french_count(len(questions), retrieval_mix_ratio), len(extra))
            chosen = sorted(random.Random(seed).sample(range(len(extra)), wanted))
            skipped["retrieval_over_mix_ratio"] = len(extra) - wanted
            extra = [extra[i] for i in chosen]
        questions += extra
    documents = list(dict.fromkeys([*(q.oracle for q in questions), *passages]))
    return QuestionSet(questions, [d for d in documents if d], skipped)


# ---------------------------------------------------------------------------- distractors


def _excluded(question: Question) -> set[str]:
    return {question.oracle, *question.also_relevant}


def check_pool(questions: Sequence[Question], documents: Sequence[str], k: int) -> None:
    """Refuse a pool too small to give every question k distractors."""
    pool = set(documents)
    for question in questions:
        available = len(pool) - len(_excluded(question) & pool)
        if available < k:
            raise MongarsError(
                f"num_documents: {k} needs at least {k} distractor documents per question, but "
                f"question {question.id!r} has only {available} in a pool of {len(documents)}; "
                "lower num_documents or give more module records / retrieval passages"
            )


def hard_negatives(
    questions: Sequence[Question],
    documents: Sequence[str],
    embed: Embed,
    k: int,
    chunk: int = 256,
    *,
    embed_questions: Embed | None = None,
    document_vectors: np.ndarray | None = None,
) -> dict[str, list[str]]:
    """The k documents nearest each question by cosine similarity, oracle and co-positives removed.

    Documents are embedded with ``embed`` unless ``document_vectors`` (one row per document, in
    order) already holds them; questions with ``embed_questions`` (the llm2vec encoder's query
    path, instruction included; default ``embed``). Ranked nearest first. Questions are scored in
    chunks so the similarity matrix stays small.
    """
    check_pool(questions, documents, k)
    if document_vectors is None:
        document_vectors = embed(list(documents))
    elif len(document_vectors) != len(documents):
        raise ValueError(
            f"document_vectors has {len(document_vectors)} rows for {len(documents)} documents"
        )
    question_embed = embed_questions or embed
    ranked: dict[str, list[str]] = {}
    for start in range(0, len(questions), chunk):
        batch = questions[start : start + chunk]
        similarity = cosine_similarity(
            question_embed([q.question for q in batch]), document_vectors
        )
        order = rank_passages(similarity)
        for question, row in zip(batch, order, strict=True):
            excluded = _excluded(question)
            nearest = []
            for index in row:
                if documents[index] not in excluded:
                    nearest.append(documents[index])
                    if len(nearest) == k:
                        break
            ranked[question.id] = nearest
    return ranked


def random_distractors(
    question: Question, documents: Sequence[str], count: int, rng: random.Random
) -> list[str]:
    """``count`` distinct documents drawn at random, never the oracle or a co-positive."""
    excluded = _excluded(question)
    chosen: list[str] = []
    seen: set[int] = set()
    while len(chosen) < count:
        index = rng.randrange(len(documents))
        if index in seen:
            continue
        seen.add(index)
        if documents[index] not in excluded:
            chosen.append(documents[index])
    return chosen


# ---------------------------------------------------------------------------- examples


@dataclass(frozen=True)
class RaftExample:
    """One training or evaluation example: question, k documents, target answer."""

    question_id: str
    source: str
    question: str
    documents: tuple[str, ...]
    oracle_index: int | None  # position of the oracle in ``documents``; None when absent
    oracle: str
    answer: str  # what ``<ANSWER>:`` should say (the reference, or the refusal when declining)
    quotes: tuple[str, ...]
    target: str  # the assistant's full turn in the RAFT format

    def prompt(self) -> str:
        """The user turn: numbered documents, then the question."""
        shown = "\n\n".join(f"[Document {i}]\n{doc}" for i, doc in enumerate(self.documents, 1))
        return f"Documents :\n\n{shown}\n\nQuestion : {self.question}"

    def messages(self, with_target: bool = True) -> list[dict[str, str]]:
        turns = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": self.prompt()},
        ]
        if with_target:
            turns.append({"role": "assistant", "content": self.target})
        return turns

    def to_record(self) -> dict[str, Any]:
        return {
            "question_id": self.question_id,
            "source": self.source,
            "question": self.question,
            "documents": list(self.documents),
            "oracle_index": self.oracle_index,
            "answer": self.answer,
            "target": self.target,
        }


def make_example(
    question: Question,
    distractors: Sequence[str],
    include_oracle: bool,
    rng: random.Random,
    *,
    max_quotes: int,
    absent_answer: str,
) -> RaftExample:
    """Shuffle oracle (if included) and distractors; write the target answer."""
    documents = [*distractors, question.oracle] if include_oracle else list(distractors)
    rng.shuffle(documents)
    answer = question.answer
    if include_oracle:
        quotes = tuple(select_quotes(question.oracle, answer, max_quotes))
        oracle_index: int | None = documents.index(question.oracle)
    else:
        quotes = ()
        answer = answer if absent_answer == "memory" else DECLINE_ANSWER
        oracle_index = None
    target = render_answer(quotes, answer)
    return RaftExample(
        question_id=question.id,
        source=question.source,
        question=question.question,
        documents=tuple(documents),
        oracle_index=oracle_index,
        oracle=question.oracle,
        answer=answer,
        quotes=quotes,
        target=target,
    )


def question_order(question_count: int, count: int, seed: int) -> list[int]:
    """The question indices ``build_examples`` visits, one per example.

    ``count`` 0: each question once, in order. Otherwise ``count`` visits in a seeded order,
    reshuffled after each pass, so a count above the number of questions spreads draws evenly and
    a smaller one visits a seeded sample: only those questions need distractors mined. The order
    has its own generator, so the examples' draws do not depend on how it was computed.
    """
    if not count:
        return list(range(question_count))
    if not question_count:
        return []
    rng = random.Random(f"raft-question-order-{seed}")
    order: list[int] = []
    while len(order) < count:
        visit = list(range(question_count))
        rng.shuffle(visit)
        order.extend(visit[: count - len(order)])
    return order


def build_examples(
    questions: Sequence[Question],
    documents: Sequence[str],
    *,
    k: int,
    oracle_probability: float,
    count: int,
    seed: int,
    ranked: dict[str, list[str]] | None = None,
    max_quotes: int = 2,
    absent_answer: str = "memory",
) -> list[RaftExample]:
    """``count`` examples (0 = one per question), each an independent seeded draw.

    ``ranked`` holds the hard negatives, nearest first (from :func:`hard_negatives`), of every
    question :func:`question_order` visits; without it distractors are random.
    """
    if not questions:
        return []
    check_pool(questions, documents, k)
    rng = random.Random(seed)
    examples = []
    for index in question_order(len(questions), count, seed):
        question = questions[index]
        include = rng.random() < oracle_probability
        needed = k - 1 if include else k
        if ranked is not None:
            distractors = ranked[question.id][:needed]
        else:
            distractors = random_distractors(question, documents, needed, rng)
        examples.append(
            make_example(
                question,
                distractors,
                include,
                rng,
                max_quotes=max_quotes,
                absent_answer=absent_answer,
            )
        )
    return examples
