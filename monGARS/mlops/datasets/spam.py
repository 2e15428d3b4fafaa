"""Spam and junk heuristics: cheap signals that a text is not worth training on.

Each check returns the drop reason or ``None``. Thresholds are fixed here (documented in
docs/datasets.md) rather than configurable: they are set loose enough that code answers and
short French sentences pass, and only clear junk is caught.
"""

from __future__ import annotations

import re
from collections import Counter

from monGARS.mlops.datasets.normalize import words

MAX_URL_CHAR_RATIO = 0.5  # share of characters inside URLs (one link in a sentence is fine)
MAX_URL_CHAR_RATIO_MANY = 0.3  # the same, once a text has 3 links or more
MAX_URLS = 8  # URLs per record
MAX_SYMBOL_RATIO = 0.35  # characters that are neither letters, digits nor spaces
MAX_UPPERCASE_RATIO = 0.7  # of letters, for texts with at least 40 letters
MAX_CHAR_RUN = 20  # the same character repeated
MAX_TOP_WORD_SHARE = 0.3  # the most frequent word, for texts with at least 20 words
MAX_REPEATED_TRIGRAM_SHARE = 0.5  # word trigrams that are repeats, for texts with >= 20 words
MAX_DUPLICATE_LINE_SHARE = 0.5  # non-empty lines that repeat an earlier one, from 4 lines
SPAM_PHRASES = (
    "cliquez ici",
    "click here",
    "gagnez de l'argent",
    "argent facile",
    "offre exclusive",
    "achetez maintenant",
    "buy now",
    "casino en ligne",
    "viagra",
    "cialis",
    "lorem ipsum",
    "100% gratuit",
    "sans engagement, inscrivez-vous",
)
MIN_SPAM_PHRASES = 2  # one phrase alone can be innocent ("cliquez ici pour ouvrir le menu")

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_CHAR_RUN = re.compile(rf"(\S)\1{{{MAX_CHAR_RUN - 1},}}")
_CHAR_RUN_EVERY_FIFTH = re.compile(rf"(\S)\1{{{MAX_CHAR_RUN // 5 - 1}}}")
# Symbols are counted against visible characters, so code indentation does not dilute them.
_SYMBOL = re.compile(r"[^\w\s]", re.UNICODE)
_NON_LETTERS = re.compile(r"[\W\d_]+")
_ASCII_CAPITALS = bytes(range(ord("A"), ord("Z") + 1))
_ASCII_LETTERS = _ASCII_CAPITALS + _ASCII_CAPITALS.lower()
_ASCII_PUNCTUATION = bytes(  # ASCII characters that are neither word characters nor spaces
    code
    for code in range(128)
    if not (chr(code).isalnum() or chr(code) == "_" or chr(code).isspace())
)


def _has_char_run(text: str) -> bool:
    """Whether ``text`` repeats one non-space character ``MAX_CHAR_RUN`` times in a row."""
    # Exact shortcut: a run of 20 covers 4 consecutive multiples of 5, so every fifth character
    # then holds the character 4 times in a row; that short scan rules out nearly all prose.
    return bool(_CHAR_RUN_EVERY_FIFTH.search(text[::5])) and bool(_CHAR_RUN.search(text))


class _AsciiCounts:
    """Counts of ASCII classes in one text, from its UTF-8 bytes (C speed, no per-char loop).

    ``non_ascii`` bounds the number of non-ASCII characters from above (each takes 2+ bytes).
    """

    def __init__(self, text: str) -> None:
        encoded = text.encode("utf-8", "surrogatepass")
        self.letters = len(encoded) - len(encoded.translate(None, _ASCII_LETTERS))
        self.capitals = len(encoded) - len(encoded.translate(None, _ASCII_CAPITALS))
        self.punctuation = len(encoded) - len(encoded.translate(None, _ASCII_PUNCTUATION))
        self.non_ascii = len(encoded) - len(text)


def _uppercase_heavy(compact: str, counts: _AsciiCounts) -> bool:
    """Over ``MAX_UPPERCASE_RATIO`` capitals among at least 40 letters (digits and _ excluded)."""
    # Exact shortcut for ordinary text: ASCII capitals plus every non-ASCII character bound the
    # capitals from above, ASCII letters bound the letters from below; most prose settles here
    # without looking at each character in Python.
    if (
        counts.letters >= 40
        and counts.capitals + counts.non_ascii <= MAX_UPPERCASE_RATIO * counts.letters
    ):
        return False
    letters = _NON_LETTERS.sub("", compact)
    return len(letters) >= 40 and sum(map(str.isupper, letters)) > MAX_UPPERCASE_RATIO * len(
        letters
    )


def _symbol_heavy(compact: str, counts: _AsciiCounts) -> bool:
    """Symbols (neither word characters nor spaces) over ``MAX_SYMBOL_RATIO`` of visible ones."""
    # Exact shortcut: symbols are at most the ASCII punctuation plus the non-ASCII characters,
    # and visible characters at least the symbols plus the ASCII letters; when even that bound
    # keeps the ratio clearly under the limit (one character of slack against rounding), stop.
    most = counts.punctuation + counts.non_ascii
    if (1 - MAX_SYMBOL_RATIO) * most < MAX_SYMBOL_RATIO * counts.letters - 1:
        return False
    visible = sum(map(len, compact.split()))  # str.split() and \s agree on what whitespace is
    return bool(visible) and len(_SYMBOL.findall(compact)) > MAX_SYMBOL_RATIO * visible


def _repetitive(tokens: tuple[str, ...]) -> bool:
    """The most frequent word, or repeated word trigrams, over their limits (20+ words)."""
    if len(tokens) < 20:
        return False
    counts = Counter(tokens)  # one C pass gives the distinct words and the top count
    if max(counts.values()) / len(tokens) > MAX_TOP_WORD_SHARE:
        return True
    # Exact shortcut: every word's first occurrence (but the last two words') starts a trigram
    # no earlier one repeats, so at most (trigrams - distinct + 2) trigrams are repeats.
    trigrams = len(tokens) - 2
    if trigrams - (len(counts) - 2) <= MAX_REPEATED_TRIGRAM_SHARE * trigrams:
        return False
    repeated = trigrams - len(set(zip(tokens, tokens[1:], tokens[2:], strict=False)))
    return repeated > MAX_REPEATED_TRIGRAM_SHARE * trigrams


def spam_reason(text: str) -> str | None:
    """The first heuristic ``text`` fails, as a drop reason, or ``None`` when it looks fine."""
    lowered = text.casefold()
    # Every URL starts with http or www. (any case): no such substring, no URL.
    has_urls = "http" in lowered or "www." in lowered
    urls = _URL.findall(text) if has_urls else []
    url_share = sum(map(len, urls)) / max(len(text), 1)
    if (
        len(urls) > MAX_URLS
        or url_share > MAX_URL_CHAR_RATIO
        or (len(urls) >= 3 and url_share > MAX_URL_CHAR_RATIO_MANY)
    ):
        return "spam_urls"
    if _has_char_run(text) or _repetitive(words(text)):
        return "spam_repetition"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) >= 4 and (len(lines) - len(set(lines))) > MAX_DUPLICATE_LINE_SHARE * len(lines):
        return "spam_repetition"
    compact = _URL.sub("", text) if urls else text
    counts = _AsciiCounts(compact)
    if _symbol_heavy(compact, counts):
        return "spam_symbols"
    if _uppercase_heavy(compact, counts):
        return "spam_uppercase"
    if sum(phrase in lowered for phrase in SPAM_PHRASES) >= MIN_SPAM_PHRASES:
        return "spam_keywords"
    return None
