"""Text normalisation: Unicode NFC and whitespace, without breaking code indentation.

Records mix prose and code (Python answers), so leading indentation and single newlines are kept;
only what carries no meaning is rewritten: control and zero-width characters, exotic spaces,
trailing spaces, runs of blank lines and runs of inner spaces.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Zero-width and bidi control characters, and the BOM: invisible, and they break dedup.
_INVISIBLE_CHARS = "\u200b\u200c\u200d\u200e\u200f\u2060\u2066-\u2069\u202a-\u202e\ufeff\u00ad"
# C0/C1 controls except tab and newline.
_CONTROL_CHARS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
# Non-breaking, narrow and other typographic spaces (French typography uses U+202F before ;:!?).
_SPACE_CHARS = "\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
_INVISIBLE = re.compile(f"[{_INVISIBLE_CHARS}]")
_CONTROL = re.compile(f"[{_CONTROL_CHARS}]")
_SPACES = re.compile(f"[{_SPACE_CHARS}]")
# Any of the three: one pass tells whether the three rewrites have anything to do.
_REWRITTEN = re.compile(f"[{_INVISIBLE_CHARS}{_CONTROL_CHARS}{_SPACE_CHARS}]")
_ASCII_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_INNER_SPACES = re.compile(r"(?<=\S)[ \t]{2,}(?=\S)")
_TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")
_WORD_TOKEN = re.compile(r"\w+", re.UNICODE)
# UTF-8 bytes -> the same bytes, but every ASCII byte that is not a word character -> a space.
_ASCII_NON_WORD_TO_SPACE = bytes(
    code if code >= 0x80 or chr(code).isalnum() or code == ord("_") else ord(" ")
    for code in range(256)
)


def normalize_text(text: str) -> str:
    """NFC, invisible/control characters removed, spaces unified, blank-line runs collapsed.

    Each rewrite runs only when the text holds what it rewrites (checked with plain substring
    tests, which are much cheaper than a regex pass on ordinary prose).
    """
    text = unicodedata.normalize("NFC", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():
        if _REWRITTEN.search(text):
            text = _INVISIBLE.sub("", text)
            text = _CONTROL.sub("", text)
            text = _SPACES.sub(" ", text)
    elif _ASCII_CONTROL.search(text):
        text = _CONTROL.sub("", text)
    if " \n" in text or "\t\n" in text or text.endswith((" ", "\t")):
        text = _TRAILING.sub("", text)
    if "  " in text or "\t" in text:
        text = _INNER_SPACES.sub(" ", text)
    if "\n\n\n" in text:
        text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip()


def dedup_words(text: str) -> tuple[str, ...]:
    """The word tokens exact and near dedup compare: ``words`` of the NFKC form of ``text``."""
    if unicodedata.is_normalized("NFKC", text):
        return words(text)  # the spam check usually tokenised this very text already
    return word_tokens(unicodedata.normalize("NFKC", text).casefold())


def dedup_key(text: str) -> str:
    """The text as exact dedup sees it: case, Unicode forms, punctuation and spacing ignored."""
    return " ".join(dedup_words(text))


@lru_cache(maxsize=1024)  # two batches of texts
def words(text: str) -> tuple[str, ...]:
    """Lowercased word tokens (letters and digits), the unit of shingles and spam checks.

    Remembered for the last 1,024 texts: cleaning and dedup tokenise the same record.
    """
    return word_tokens(text.casefold())


def word_tokens(text: str) -> tuple[str, ...]:
    """``re.findall(r"\\w+", text)``, about twice as fast on prose.

    ASCII separators become spaces in one C pass over the UTF-8 bytes and a split cuts there;
    the pieces are the tokens when they are all word characters (``str.isalnum`` is ``\\w``
    without ``_``), which is the rule for French prose. Pieces holding another separator (``«``,
    ``’``, an em dash) or an underscore are tokenised by the pattern itself.
    """
    encoded = text.encode("utf-8", "surrogatepass").translate(_ASCII_NON_WORD_TO_SPACE)
    pieces = encoded.decode("utf-8", "surrogatepass").split()
    if "".join(pieces).isalnum():
        return tuple(pieces)
    tokens: list[str] = []
    for piece in pieces:
        if piece.isalnum():
            tokens.append(piece)
        else:
            tokens.extend(_WORD_TOKEN.findall(piece))
    return tuple(tokens)
