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
# Symbols are counted against visible characters, so code indentation does not dilute them.
_SYMBOL = re.compile(r"[^\w\s]", re.UNICODE)
_NON_LETTERS = re.compile(r"[\W\d_]+")
_ASCII_CAPITALS = bytes(range(ord("A"), ord("Z") + 1))
_ASCII_LETTERS = _ASCII_CAPITALS + _ASCII_CAPITALS.lower()


def _uppercase_heavy(compact: str) -> bool:
    """Over ``MAX_UPPERCASE_RATIO`` capitals among at least 40 letters (digits and _ excluded)."""
    # Exact shortcut for ordinary text: ASCII capitals plus every non-ASCII character bound the
    # capitals from above, ASCII letters bound the letters from below; most prose settles here
    # without looking at each character in Python.
    encoded = compact.encode("utf-8", "surrogatepass")
    ascii_letters = len(encoded) - len(encoded.translate(None, _ASCII_LETTERS))
    ascii_capitals = len(encoded) - len(encoded.translate(None, _ASCII_CAPITALS))
    non_ascii = len(encoded) - len(compact)  # >= the number of non-ASCII characters
    if ascii_letters >= 40 and ascii_capitals + non_ascii <= MAX_UPPERCASE_RATIO * ascii_letters:
        return False
    letters = _NON_LETTERS.sub("", compact)
    return len(letters) >= 40 and sum(map(str.isupper, letters)) > MAX_UPPERCASE_RATIO * len(
        letters
    )


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
    if _CHAR_RUN.search(text):
        return "spam_repetition"
    tokens = words(text)
    if len(tokens) >= 20:
        top_share = max(Counter(tokens).values()) / len(tokens)
        trigrams = len(tokens) - 2
        repeated = trigrams - len(set(zip(tokens, tokens[1:], tokens[2:], strict=False)))
        if top_share > MAX_TOP_WORD_SHARE or repeated > MAX_REPEATED_TRIGRAM_SHARE * trigrams:
            return "spam_repetition"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) >= 4 and (len(lines) - len(set(lines))) > MAX_DUPLICATE_LINE_SHARE * len(lines):
        return "spam_repetition"
    compact = _URL.sub("", text) if urls else text
    visible = sum(map(len, compact.split()))  # str.split() and \s agree on what whitespace is
    if visible and len(_SYMBOL.findall(compact)) > MAX_SYMBOL_RATIO * visible:
        return "spam_symbols"
    if _uppercase_heavy(compact):
        return "spam_uppercase"
    if sum(phrase in lowered for phrase in SPAM_PHRASES) >= MIN_SPAM_PHRASES:
        return "spam_keywords"
    return None
