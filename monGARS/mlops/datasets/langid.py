"""Offline language identification for the cleaning filter: two naive Bayes models on prose.

py3langid (langid.py's model over byte n-grams, shipped inside the wheel) and the project's
n-gram model (``monGARS/mlops/data/langid/ngram_nb.npz``: hashed character 1-5-grams, trained by
bench/train_langid_model.py on Debian gettext catalogues the benchmark does not use), both over
the seven languages the filter tells apart (fr, en, es, de, it, pt, nl). Their log-likelihoods
are added and divided by a temperature fitted on a held-out dev split. Before scoring, a text is
reduced to its prose (``prose_text``): tags, backticked spans, URLs, code lines, placeholders
(``%s``, ``{name}``), options, paths, calls, camelCase/dotted/snake_case names, digits and short
acronyms go, and quoted passages («…», “…”, "…") too when enough prose remains without them: a
French instruction that quotes an English sentence to translate is French.

Then the record is **accepted** when the accepted languages' share of the combined probability
reaches ``min_probability`` (default ``DEFAULT_MIN_PROBABILITY``, calibrated on the dev split:
dropping clean French costs a French corpus more than keeping a rare foreign row), **rejected**
otherwise, and **undecided** when fewer than ``MIN_PROSE_LETTERS`` letters of prose remain (too
short, all code, all numbers): there is nothing to judge, and the cleaning rule for that case is
the ``language_undecided`` setting. Only the first ``MAX_PROSE_CHARS`` characters of prose are
scored (prose taken from the first ``MAX_TEXT_CHARS``), so a long record costs no more than a
paragraph. Deterministic: fixed weights, no salted hashing. Measured figures: docs/datasets.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

SUPPORTED_LANGUAGES = ("de", "en", "es", "fr", "it", "nl", "pt")
DEFAULT_MIN_PROBABILITY = 0.00916  # calibrated on the dev split by bench/train_langid_model.py
MIN_PROSE_LETTERS = 6
MAX_PROSE_CHARS = 300
MAX_TEXT_CHARS = 1000
UNKNOWN = "unknown"
NGRAM_MODEL_FILE = Path(__file__).resolve().parents[1] / "data" / "langid" / "ngram_nb.npz"

ACCEPTED, REJECTED, UNDECIDED = "accepted", "rejected", "undecided"

# HTML tags go (their names are not prose); other angle-bracketed words (``<nom>``, usage
# metavariables) keep their word.
_TAGS = re.compile(
    r"</?(?:a|abbr|b|big|blockquote|body|br|button|code|del|div|em|font|h[1-6]|head|hr|html|i|img"
    r"|input|kbd|label|li|link|meta|ol|option|p|pre|q|s|small|span|strong|sub|sup|table|td|th|tr"
    r"|tt|u|ul|var)\b[^<>\n]{0,80}>",
    re.IGNORECASE,
)
_BACKTICKS = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
_URLS = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+", re.IGNORECASE)
# printf and format placeholders (``%s``, ``%-10.3lf``, ``%1$s``, ``{name}``, ``${var}``, ``@VAR@``)
# go before words are cut, so that a word glued to one (``%sFichier``) stays.
_PLACEHOLDER = re.compile(
    r"%(?:\d+\$)?[-+ #0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|ll|[hlLqjzt])?[diouxXeEfFgGaAcspn%]"
    r"|\$?\{[^{}\s]{0,40}\}|@\w+@"
)
# Quoted passages are often the material a French instruction is about (text to translate or
# correct), so they are not evidence of the record's own language.
_QUOTED = re.compile(r"«[^»\n]{0,400}»|“[^”\n]{0,400}”|„[^“”\n]{0,400}[“”]|\"[^\"\n]{0,400}\"")
# A whitespace-separated chunk that opens like an option, a path, a variable or a pipe is code,
# and so is a call (``print(x)``; a plural mark such as ``fichier(s)`` is not one).
_CODE_START = re.compile(r"[-$@#~|\\/][^\s«»\"“”]*")
_CALL = re.compile(r"\w\((?![^\W\d_]{1,3}\)[^\w(]*$)")
# Inside other chunks, brackets, slashes, ``=``, ``+`` and ``:`` separate words (``[nom=valeur]``,
# ``ajouter/retirer``); a piece is then code when it holds a camelCase hump, code punctuation
# between word characters (dotted or snake_case names), or a digit, and an acronym when it is
# in capitals of at most four letters (longer capitalised words, ``FICHIER``, are words).
_PIECE_SEPARATORS = re.compile(r"[/\\=+\[\](){}<>|:;,!?]+")
_CODE_PIECE = re.compile(
    r"(?:"
    r"\S*[a-z][A-Z]\S*"
    r"|\S*\w[._#$%@^~*&]+\w\S*"
    r"|[^\s\w]*[A-ZÀ-ÖØ-Þ][A-ZÀ-ÖØ-Þ'’-]{0,3}[^\s\w]*"
    r")"
)
_DIGIT = re.compile(r"\d")
_EDGE_PUNCTUATION = ".,;:!?…«»\"“”'’()"
_LETTER = re.compile(r"[^\W\d_]")
# A line of source code: indented, opening with a keyword and ending like a block or call, or
# ending in ";", "{" or "}" straight after code (French puts a space before ";"). Fenced blocks
# go whole with the backticked spans.
_CODE_LINE = re.compile(
    r"^(?:[ \t]{2,}\S.*|\s*(?:def|class|import|from|return|if|elif|for|while|function|const|let"
    r"|var)\b.*[:)]\s*|.*[^\s;{}][;{}]\s*)$",
    re.MULTILINE,
)


def _prose_pieces(chunk: str) -> list[str]:
    if _CODE_START.fullmatch(chunk) or _CALL.search(chunk):
        return []
    words = []
    for piece in _PIECE_SEPARATORS.split(chunk):
        if _DIGIT.search(piece):  # "Base64-décodage": the digit-free parts of a hyphenated word
            words.extend(
                part
                for part in piece.split("-")
                if part and not _DIGIT.search(part) and not _CODE_PIECE.fullmatch(part)
            )
        elif piece and not _CODE_PIECE.fullmatch(piece):
            words.append(piece)
    return words


def _strip_code(text: str) -> str:
    words = []
    for chunk in text.split():
        # Fast path: a plain lower-case or capitalised word (edge punctuation aside) is prose.
        core = chunk.strip(_EDGE_PUNCTUATION)
        if core.isalpha() and (core.islower() or core.istitle()):
            words.append(chunk)
        else:
            words.extend(_prose_pieces(chunk))
    return " ".join(words)


def prose_text(text: str) -> str:
    """The words of ``text`` that are prose: code, numbers, URLs (and quotes, if prose remains) out.

    camelCase/dotted/snake_case names, options, placeholders, `backticked` spans and acronyms
    are code or names, whatever the language of the sentence around them.
    """
    text = _CODE_LINE.sub(" ", _BACKTICKS.sub(" ", text[:MAX_TEXT_CHARS]))
    if "://" in text or "www." in text or "WWW." in text:
        text = _URLS.sub(" ", text)
    text = _PLACEHOLDER.sub(" ", _TAGS.sub(" ", text))
    unquoted = _strip_code(_QUOTED.sub(" ", text))
    if enough_prose(unquoted):
        return unquoted
    return _strip_code(text)


def enough_prose(text: str) -> bool:
    """Whether ``text`` holds at least ``MIN_PROSE_LETTERS`` letters (stops counting there)."""
    return next(islice(_LETTER.finditer(text), MIN_PROSE_LETTERS - 1, None), None) is not None


# ---- the project's model: naive Bayes over hashed character n-grams -------------------------
# Trained by bench/train_langid_model.py on Debian gettext catalogues of packages the benchmark
# does not use (monGARS/mlops/data/langid/SOURCES.md); one row of log-probabilities per hash
# bucket, one column per supported language.
HASH_BITS = 18
NGRAM_MAX = 5
_PRIME = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(64 - HASH_BITS)
_ORDER_SALT = [np.uint64((n * 0x632BE59BD9B4E019) % 2**64) for n in range(NGRAM_MAX + 1)]


def ngram_buckets(prose: str) -> np.ndarray:
    """Hash buckets of the 1- to NGRAM_MAX-grams of ``prose`` (case-folded, space-padded words).

    Deterministic across processes and platforms (arithmetic on unsigned 64-bit code points, no
    salted ``hash()``), so the shipped weights index the same buckets everywhere.
    """
    text = " " + " ".join(prose.casefold().split()) + " "
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    parts = []
    hashed = np.zeros(len(codes), dtype=np.uint64)
    for n in range(1, min(NGRAM_MAX, len(codes)) + 1):
        hashed = hashed[: len(codes) - n + 1] * _PRIME + codes[n - 1 :]
        parts.append(((hashed ^ _ORDER_SALT[n]) * _MIX) >> _SHIFT)
    return np.concatenate(parts)


@lru_cache(maxsize=1)
def _model() -> Any:
    """py3langid's shipped model, restricted to the supported languages (loaded once a process)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    model = LanguageIdentifier.from_model_file(MODEL_FILE)
    model.set_languages(list(SUPPORTED_LANGUAGES))
    return model


@dataclass(frozen=True)
class NgramModel:
    """The shipped naive Bayes weights and the temperature calibrated on the dev split."""

    weights: np.ndarray  # (len(SUPPORTED_LANGUAGES), 2**HASH_BITS) log-probabilities
    temperature: float
    min_probability: float  # the dev split's calibrated threshold (DEFAULT_MIN_PROBABILITY)


@lru_cache(maxsize=1)
def ngram_model() -> NgramModel:
    """Load monGARS/mlops/data/langid/ngram_nb.npz once a process, checking it fits this code."""
    with np.load(NGRAM_MODEL_FILE) as data:
        if (
            tuple(data["languages"].tolist()) != SUPPORTED_LANGUAGES
            or int(data["hash_bits"]) != HASH_BITS
            or int(data["ngram_max"]) != NGRAM_MAX
        ):
            raise ValueError(
                f"{NGRAM_MODEL_FILE} was built for other languages or hashing: rebuild it with "
                "bench/train_langid_model.py"
            )
        return NgramModel(
            # One row per language: gathering along a contiguous row is the fast way round.
            weights=np.ascontiguousarray(data["weights"].T, dtype=np.float32),
            temperature=float(data["temperature"]),
            min_probability=float(data["min_probability"]),
        )


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
    if not enough_prose(prose):
        return LanguageGuess(UNKNOWN, 0.0, 0.0, {})
    # rank() without normalisation gives py3langid's raw log-likelihoods; the n-gram model's
    # are added (a product of the two models), then a softmax at the calibrated temperature.
    prose = prose[:MAX_PROSE_CHARS]
    model = ngram_model()
    py3 = dict(_model().rank(prose))
    logits = model.weights.take(ngram_buckets(prose), axis=1).sum(1, dtype=np.float64)
    logits += np.array([py3[lang] for lang in SUPPORTED_LANGUAGES])
    logits /= model.temperature
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    scores = {lang: float(p) for lang, p in zip(SUPPORTED_LANGUAGES, probabilities, strict=True)}
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
