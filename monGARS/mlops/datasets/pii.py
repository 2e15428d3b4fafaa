"""Personal data and secrets: find them with checksums where one exists, then redact or drop.

Policy (the ``pii_drop`` config field picks it per kind; these are the defaults):
- dropped record: card numbers (Luhn-valid), IBANs (mod-97-valid), French social security numbers
  (NIR, with a valid key) and secrets (API keys, tokens, long hex/base64 strings). A masked
  number or key still says "this person has a bank account here"; the record is not worth it.
- redacted in place: e-mail addresses and phone numbers (French and international), which are
  common in otherwise good text (signatures, contact lines) and carry no meaning for training.
Redaction replaces the match with ``[EMAIL]``, ``[PHONE]``, ... so sentence structure survives.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

PII_KINDS = ("email", "phone", "card", "iban", "nir", "secret")
PLACEHOLDER = {kind: f"[{kind.upper()}]" for kind in PII_KINDS}

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
_PHONE_FR = re.compile(
    r"(?<![\w+])(?:(?:\+|00)33[\s.-]?(?:\(0\)[\s.-]?)?|0)[1-9](?:[\s.-]?\d{2}){4}(?![\w])"
)
_PHONE_INTL = re.compile(r"(?<![\w+])(?:\+|00)[1-9]\d{0,2}(?:[\s.-]?\(?\d{1,4}\)?){2,6}(?![\w])")
_CARD = re.compile(r"(?<![\d-])[2-6]\d{3}(?:[ -]?\d{2,4}){2,5}(?![\d])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?|[A-Z0-9]{11,30})\b")
_NIR = re.compile(
    r"(?<![\d])([12])[ .]?(\d{2})[ .]?(0[1-9]|1[0-2]|[2-9]\d)[ .]?(\d{2}|2[AB])[ .]?(\d{3})"
    r"[ .]?(\d{3})[ .]?(\d{2})(?![\d])"
)
_SECRET_PATTERNS = [
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),  # Hugging Face
    re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"),  # OpenAI / Anthropic style
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{22,}\b"),  # GitHub
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),  # Slack
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),  # Google API key
    re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),  # JWT
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]
# One alternation, one scan of the text, instead of one scan per provider.
_KNOWN_SECRET = re.compile("|".join(f"(?:{pattern.pattern})" for pattern in _SECRET_PATTERNS))
# Every match of _KNOWN_SECRET contains one of these: a text without any is not scanned.
_KNOWN_SECRET_MARKERS = (
    "hf_",
    "sk-",
    "AKIA",
    "ASIA",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "AIza",
    "eyJ",
    "-----BEGIN ",
)
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b(?:api[_-]?key|secret|token|password|passwd|pwd|mot de passe|access[_-]?key)\b"
    r"[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+_.-]{12,})"
)
_LONG_HEX = re.compile(r"(?<![0-9A-Za-z])(?:[0-9a-f]{32,}|[0-9A-F]{32,})(?![0-9A-Za-z])")
_LONG_B64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{40,}={0,2}(?![A-Za-z0-9+/_-])")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:  # every second digit from the right is doubled
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616: country and check digits moved to the end, letters as numbers, mod 97 == 1."""
    compact = iban.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def nir_valid(match: re.Match[str]) -> bool:
    """French NIR key: 97 - (13 digits mod 97), Corsica's 2A/2B read as 19/18."""
    sex, year, month, dept, commune, order, key = match.groups()
    dept_digits = {"2A": "19", "2B": "18"}.get(dept, dept)
    number = int(sex + year + month + dept_digits + commune + order)
    return 97 - number % 97 == int(key)


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _looks_random(token: str, minimum_entropy: float) -> bool:
    has_digit = any(c.isdigit() for c in token)
    has_alpha = any(c.isalpha() for c in token)
    return has_digit and has_alpha and _entropy(token) >= minimum_entropy


@dataclass(frozen=True)
class PiiMatch:
    kind: str
    start: int
    end: int


_DIGIT = re.compile(r"\d")


def _secret_spans(text: str, has_digit: bool) -> list[PiiMatch]:
    spans = []
    if any(map(text.__contains__, _KNOWN_SECRET_MARKERS)):  # a C loop, no generator frames
        spans = [PiiMatch("secret", m.start(), m.end()) for m in _KNOWN_SECRET.finditer(text)]
    if not has_digit:  # the checks below all require a digit in the secret
        return spans
    for m in _ASSIGNED_SECRET.finditer(text):
        if _looks_random(m.group(1), 3.0):
            spans.append(PiiMatch("secret", *m.span(1)))
    for m in _LONG_HEX.finditer(text):
        if _looks_random(m.group(0), 3.0):
            spans.append(PiiMatch("secret", m.start(), m.end()))
    for m in _LONG_B64.finditer(text):
        token = m.group(0)
        mixed_case = any(c.isupper() for c in token) and any(c.islower() for c in token)
        if mixed_case and _looks_random(token, 4.2):
            spans.append(PiiMatch("secret", m.start(), m.end()))
    return spans


def find_pii(text: str) -> list[PiiMatch]:
    """Non-overlapping matches, most specific kind first (a NIR is not also a phone number)."""
    has_digit = _DIGIT.search(text) is not None
    candidates = _secret_spans(text, has_digit)
    if "@" in text:
        candidates += [PiiMatch("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    if has_digit:  # every other kind is mostly digits
        candidates += _number_spans(text)
    return _non_overlapping(candidates)


_PRIORITY = {kind: rank for rank, kind in enumerate(("secret", "iban", "nir", "card", "email"))}
_PRIORITY["phone"] = len(_PRIORITY)


def _non_overlapping(candidates: list[PiiMatch]) -> list[PiiMatch]:
    """Keep the most specific kind where matches overlap, then sort by position."""
    chosen: list[PiiMatch] = []
    taken: list[tuple[int, int]] = []
    for match in sorted(candidates, key=lambda m: (_PRIORITY[m.kind], m.start)):
        if all(match.end <= start or match.start >= end for start, end in taken):
            chosen.append(match)
            taken.append((match.start, match.end))
    return sorted(chosen, key=lambda m: m.start)


def _number_spans(text: str) -> list[PiiMatch]:
    candidates: list[PiiMatch] = []
    candidates += [
        PiiMatch("iban", m.start(), m.end()) for m in _IBAN.finditer(text) if iban_valid(m.group(0))
    ]
    candidates += [PiiMatch("nir", m.start(), m.end()) for m in _NIR.finditer(text) if nir_valid(m)]
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            candidates.append(PiiMatch("card", m.start(), m.end()))
    candidates += [PiiMatch("phone", m.start(), m.end()) for m in _PHONE_FR.finditer(text)]
    for m in _PHONE_INTL.finditer(text):
        # E.164 numbers have 8-15 digits after the "+" or "00" international prefix.
        digits = re.sub(r"\D", "", m.group(0))
        if 8 <= len(digits[2:] if m.group(0).startswith("00") else digits) <= 15:
            candidates.append(PiiMatch("phone", m.start(), m.end()))
    return candidates


def redact(text: str, matches: list[PiiMatch]) -> str:
    """Replace each match by its placeholder (matches must be sorted and non-overlapping)."""
    parts: list[str] = []
    cursor = 0
    for match in matches:
        parts.append(text[cursor : match.start])
        parts.append(PLACEHOLDER[match.kind])
        cursor = match.end
    parts.append(text[cursor:])
    return "".join(parts)
