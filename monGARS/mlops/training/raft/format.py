"""The RAFT answer format: quoted evidence from the oracle document, then the answer.

A target answer (and what a RAFT model is trained to generate) is::

    ##begin_quote##<a line copied verbatim from the oracle document>##end_quote##
    ##begin_quote##<another line>##end_quote##
    <ANSWER>: <the answer>

and, when no document holds the answer::

    ##no_quote## Aucun des documents fournis ne contient la réponse.
    <ANSWER>: <the answer from memory, or a refusal>

Quotes come first so the answer is conditioned on the evidence the model chose (the RAFT paper's
chain-of-thought answers quote the same way). The markers are plain text, not special tokens, so
any tokenizer and llama.cpp handle them; :func:`neutralise` keeps them out of documents, questions
and answers so a parse never confuses data with structure.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

BEGIN_QUOTE = "##begin_quote##"
END_QUOTE = "##end_quote##"
NO_QUOTE = "##no_quote##"
ANSWER = "<ANSWER>:"
ABSENT_NOTE = "Aucun des documents fournis ne contient la réponse."
DECLINE_ANSWER = (
    "Je ne peux pas répondre avec certitude : les documents fournis ne contiennent pas la réponse."
)

# The instruction every RAFT prompt starts with (system message), at training and at inference.
SYSTEM_PROMPT = (
    "Tu es monGARS, un assistant qui connaît le code. Réponds à la question à l'aide des documents "
    f"fournis. Cite d'abord, mot pour mot, les passages utiles, chacun entre {BEGIN_QUOTE} et "
    f"{END_QUOTE}, puis donne la réponse après « {ANSWER} ». Si aucun document ne contient la "
    f"réponse, écris {NO_QUOTE} puis réponds après « {ANSWER} »."
)

_MARKERS = (BEGIN_QUOTE, END_QUOTE, NO_QUOTE, ANSWER)
_QUOTE = re.compile(re.escape(BEGIN_QUOTE) + r"(.*?)" + re.escape(END_QUOTE), re.DOTALL)


def neutralise(text: str) -> str:
    """Break format markers inside data: ``##x##`` -> ``#x#``, ``<ANSWER>:`` -> ``<ANSWER> :``."""
    for marker in _MARKERS:
        if marker in text:
            broken = marker.replace("##", "#") if marker.startswith("##") else "<ANSWER> :"
            text = text.replace(marker, broken)
    return text


def render_answer(quotes: Sequence[str], answer: str, *, absent_note: str = ABSENT_NOTE) -> str:
    """The target text: each quote on its own line, or the no-quote line, then the answer."""
    lines = [f"{BEGIN_QUOTE}{quote}{END_QUOTE}" for quote in quotes]
    if not lines:
        lines = [f"{NO_QUOTE} {absent_note}"]
    lines.append(f"{ANSWER} {answer}")
    return "\n".join(lines)


@dataclass(frozen=True)
class ParsedAnswer:
    """What a generated (or target) text says, in the RAFT format's terms."""

    quotes: tuple[str, ...]
    answer: str | None  # None when the text has no ``<ANSWER>:`` marker
    no_quote: bool  # the text declared that no document holds the answer

    @property
    def well_formed(self) -> bool:
        """Quotes or the no-quote marker (not both), then an answer."""
        return self.answer is not None and (bool(self.quotes) != self.no_quote)


def parse_answer(text: str) -> ParsedAnswer:
    """Split a text in the RAFT format into its quotes, no-quote marker and answer."""
    head, marker, tail = text.partition(ANSWER)
    quotes = tuple(match.group(1) for match in _QUOTE.finditer(head))
    return ParsedAnswer(
        quotes=quotes,
        answer=tail.strip() if marker else None,
        no_quote=NO_QUOTE in head,
    )


# ---------------------------------------------------------------------------- evidence selection

_WORD = re.compile(r"\w+", re.UNICODE)
# Frequent French/English words that say nothing about which line is the evidence.
_STOPWORDS = frozenset(
    (  # noqa: SIM905 - a word list reads best as words
        "les des une est dans pour par qui que quoi avec sur son ses aux elle ils cette ces mais "
        "pas plus sont été fait entre sans comme tout tous leur leurs the and for with from this "
        "that are was not"
    ).split()
)


def content_words(text: str) -> set[str]:
    """Lower-cased words of 3+ characters, stopwords removed."""
    return {w for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in _STOPWORDS}


_SENTENCE_END = re.compile(r"(?<=[.!?»])\s+(?=[A-ZÀ-ÖØ-Þ«\"`])")


def document_units(document: str) -> list[str]:
    """The quotable units of a document: its non-empty lines, long lines cut into sentences.

    Each unit is a verbatim substring of the document, so a quote can be checked by ``in``.
    """
    units = []
    for line in document.splitlines():
        for sentence in _SENTENCE_END.split(line):
            if sentence.strip():
                units.append(sentence.strip())
    return units


def select_quotes(document: str, answer: str, max_quotes: int) -> list[str]:
    """The units of ``document`` sharing the most content words with ``answer``, in document order.

    A unit must share at least one word; when none does, the first unit (which names what the
    document is about) is the evidence.
    """
    units = document_units(document)
    if not units:
        return []
    wanted = content_words(answer)
    scores = [len(content_words(unit) & wanted) for unit in units]
    ranked = sorted(range(len(units)), key=lambda i: (-scores[i], i))
    chosen = sorted(i for i in ranked[:max_quotes] if scores[i] > 0)
    return [units[i] for i in chosen] if chosen else [units[0]]


# ---------------------------------------------------------------------------- scoring

_PUNCTUATION = str.maketrans({c: " " for c in string.punctuation + "«»’…"})


def normalise_answer(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed (SQuAD-style, language-neutral)."""
    return " ".join(text.lower().translate(_PUNCTUATION).split())


def exact_match(prediction: str | None, reference: str) -> bool:
    return prediction is not None and normalise_answer(prediction) == normalise_answer(reference)


def token_f1(prediction: str | None, reference: str) -> float:
    """Harmonic mean of token precision and recall after normalisation (SQuAD's F1)."""
    if prediction is None:
        return 0.0
    predicted = normalise_answer(prediction).split()
    expected = normalise_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def quotes_grounded(quotes: Sequence[str], document: str) -> bool:
    """True when there is at least one quote and every quote is a verbatim part of ``document``."""
    return bool(quotes) and all(quote.strip() and quote.strip() in document for quote in quotes)
