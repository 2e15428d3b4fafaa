"""Offline language identification for the cleaning filter: py3langid on a record's own prose.

The model is langid.py's naive Bayes over byte n-grams (the ``py3langid`` package, which ships it
inside the wheel: nothing downloads), restricted to the seven languages the filter tells apart
(fr, en, es, de, it, pt, nl). Before scoring, a text is reduced to its prose:

* HTML tags, `backticked` spans and URLs go, and so does every word that looks like code: a
  camelCase, dotted, snake_case or path-like name, an option (``--dry-run``), a placeholder
  (``%s``), anything with digits or brackets, and all-capitals words (acronyms, ``FICHIER``);
* quoted passages («…», “…”, "…") go when enough prose remains without them: a French
  instruction that quotes an English sentence to translate is French.

Then the record is **accepted** when the accepted languages' share of the model's probability
(softmax of the log-likelihoods over the seven languages) reaches ``min_probability`` (default
0.15: dropping clean French costs a French corpus more than keeping a rare foreign row, and
short French fragments often score second to a neighbour language), **rejected** otherwise,
and **undecided** when fewer than ``MIN_PROSE_LETTERS`` letters of prose remain (too short, all
code, all numbers): there is nothing to judge, and the cleaning rule for that case is the
``language_undecided`` setting. Only the first ``MAX_PROSE_CHARS`` characters of prose are
scored (prose taken from the first ``MAX_TEXT_CHARS``), so a long record costs no more than
a paragraph. Measured figures: docs/datasets.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

SUPPORTED_LANGUAGES = ("de", "en", "es", "fr", "it", "nl", "pt")
DEFAULT_MIN_PROBABILITY = 0.15
MIN_PROSE_LETTERS = 8
MAX_PROSE_CHARS = 300
MAX_TEXT_CHARS = 1000
UNKNOWN = "unknown"

ACCEPTED, REJECTED, UNDECIDED = "accepted", "rejected", "undecided"

_TAGS = re.compile(r"</?[A-Za-z][^<>\n]{0,80}>")
_BACKTICKS = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
_URLS = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+", re.IGNORECASE)
# Quoted passages are often the material a French instruction is about (text to translate or
# correct), so they are not evidence of the record's own language.
_QUOTED = re.compile(r"«[^»\n]{0,400}»|“[^”\n]{0,400}”|„[^“”\n]{0,400}[“”]|\"[^\"\n]{0,400}\"")
# A whitespace-separated chunk is code when, inside it (edge punctuation aside), there is a
# camelCase hump, code punctuation between word characters, a digit, or a leading option dash
# or placeholder sign; all-capitals words (acronyms, placeholders such as FICHIER) go too.
_CODE_CHUNK = re.compile(
    r"(?:"
    r"\S*[a-z][A-Z]\S*"
    r"|\S*\w[._/\\=@#$%<>{}()\[\]|^~+*&:]+\w\S*"
    r"|\S*[\d%]\S*"
    r"|[-$@#~|\\/][^\s«»\"“”]*"
    r"|[^\s\w]*[A-ZÀ-ÖØ-Þ][A-ZÀ-ÖØ-Þ'’-]+\b[^\s\w]*"
    r")"
)
_LETTER = re.compile(r"[^\W\d_]")
# A line of source code: indented, opening with a keyword and ending like a block or call, or
# ending in ";", "{" or "}" straight after code (French puts a space before ";"). Fenced blocks
# go whole with the backticked spans.
_CODE_LINE = re.compile(
    r"^(?:[ \t]{2,}\S.*|\s*(?:def|class|import|from|return|if|elif|for|while|function|const|let"
    r"|var)\b.*[:)]\s*|.*[^\s;{}][;{}]\s*)$",
    re.MULTILINE,
)


def _strip_code(text: str) -> str:
    words = []
    for chunk in text.split():
        # Fast path: a plain lower-case or capitalised word is prose.
        if (chunk.isalpha() and (chunk.islower() or chunk.istitle())) or not _CODE_CHUNK.fullmatch(
            chunk
        ):
            words.append(chunk)
    return " ".join(words)


def prose_text(text: str) -> str:
    """The words of ``text`` that are prose: code, numbers, URLs (and quotes, if prose remains) out.

    camelCase/dotted/snake_case names, options, placeholders, `backticked` spans and acronyms
    are code or names, whatever the language of the sentence around them.
    """
    text = _BACKTICKS.sub(" ", _TAGS.sub(" ", text[:MAX_TEXT_CHARS]))
    text = _URLS.sub(" ", _CODE_LINE.sub(" ", text))
    unquoted = _strip_code(_QUOTED.sub(" ", text))
    if _letters(unquoted) >= MIN_PROSE_LETTERS:
        return unquoted
    return _strip_code(text)


def _letters(text: str) -> int:
    return len(_LETTER.findall(text))


@lru_cache(maxsize=1)
def _model() -> Any:
    """py3langid's shipped model, restricted to the supported languages (loaded once a process)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    model = LanguageIdentifier.from_model_file(MODEL_FILE)
    model.set_languages(list(SUPPORTED_LANGUAGES))
    return model


@dataclass(frozen=True)
class LanguageGuess:
    """The most probable language and every language's probability (empty when undecided).

    ``language`` is ``"unknown"`` when the text has fewer than ``MIN_PROSE_LETTERS`` letters of
    prose; ``margin`` is (best − second) / best of the probabilities.
    """

    language: str
    score: float
    margin: float
    scores: dict[str, float]


def identify(text: str) -> LanguageGuess:
    """Probability of each supported language for the prose of ``text``."""
    prose = prose_text(text)
    if _letters(prose) < MIN_PROSE_LETTERS:
        return LanguageGuess(UNKNOWN, 0.0, 0.0, {})
    # rank() without normalisation gives py3langid's raw log-likelihoods; softmax them here.
    ranked_raw = _model().rank(prose[:MAX_PROSE_CHARS])
    logits = np.array([score for _, score in ranked_raw], dtype=np.float64)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    scores = {lang: float(p) for (lang, _), p in zip(ranked_raw, probabilities, strict=True)}
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    (best, best_score), (_, second_score) = ranked[0], ranked[1]
    return LanguageGuess(best, best_score, (best_score - second_score) / best_score, scores)


def judge(
    text: str,
    languages: tuple[str, ...] | list[str],
    min_probability: float = DEFAULT_MIN_PROBABILITY,
) -> str:
    """``"accepted"``, ``"rejected"`` or ``"undecided"`` (too little prose to tell).

    Accepted when the languages in ``languages`` hold at least ``min_probability`` of the
    probability between them.
    """
    guess = identify(text)
    if guess.language == UNKNOWN:
        return UNDECIDED
    share = sum(guess.scores.get(lang, 0.0) for lang in languages)
    return ACCEPTED if share >= min_probability else REJECTED


def keeps_language(
    text: str,
    languages: tuple[str, ...] | list[str],
    min_probability: float = DEFAULT_MIN_PROBABILITY,
    undecided: str = "keep",
) -> bool:
    """The cleaning filter's decision for one text, undecided texts following ``undecided``."""
    verdict = judge(text, languages, min_probability)
    return verdict == ACCEPTED or (verdict == UNDECIDED and undecided == "keep")
