"""PII detection at its edges: checksum arithmetic, length bounds, entropy thresholds, overlaps.

tests/unit/test_datasets_cleaning.py checks that each kind is found in ordinary sentences; these
tests pin the numbers the detectors decide on, each with an input on both sides of the line. A
detector that is too lax drops good records (or redacts good text); one too strict lets a card
number or a secret into the training data.
"""

from __future__ import annotations

import pytest

from monGARS.mlops.datasets.pii import find_pii, iban_valid, luhn_valid, nir_valid, redact


def with_luhn_digit(body: str) -> str:
    """``body`` and the one check digit that makes the whole Luhn-valid (written apart from
    the module's implementation: digit sums of the doubled digits)."""
    for check in "0123456789":
        number = body + check
        digits = [int(c) for c in reversed(number)]
        doubled = [sum(divmod(d * 2, 10)) if i % 2 else d for i, d in enumerate(digits)]
        if sum(doubled) % 10 == 0:
            return number
    raise AssertionError("unreachable: one of ten check digits always fits")


def with_iban_check(country: str, bban: str, *, remainder: int = 1) -> str:
    """An IBAN-shaped string whose rearranged number is ``remainder`` mod 97 (1 is valid)."""
    numeric = int("".join(str(int(char, 36)) for char in bban + country + "00"))
    check = (remainder - numeric) % 97
    return f"{country}{check:02d}{bban}"


def kinds(text: str) -> list[str]:
    return [match.kind for match in find_pii(text)]


# ---- checksums ----------------------------------------------------------------------------


def test_luhn_subtracts_nine_from_doubled_digits_above_four() -> None:
    # 79927398713: the doubled digits are 1, 8, 3, 2 and 9 (9 -> 18 -> 9, 8 -> 16 -> 7).
    assert luhn_valid("79927398713"), "the classic Luhn example is refused"
    assert not luhn_valid("79927398710")
    for body in ("4999999999999", "5555555555554", "0"):
        number = with_luhn_digit(body)
        assert luhn_valid(number), f"{number} is Luhn-valid"
        wrong = number[:-1] + str((int(number[-1]) + 5) % 10)
        assert not luhn_valid(wrong), f"{wrong} has a wrong check digit"


def test_iban_length_bounds_are_iso_13616s_15_to_34() -> None:
    shortest = with_iban_check("NO", "86011117947")  # Norway: 15 characters
    longest = with_iban_check("LC", "A" * 30)  # 34 characters, the longest allowed
    assert (len(shortest), len(longest)) == (15, 34)
    assert iban_valid(shortest) and iban_valid(longest), "valid IBANs at the length bounds"
    too_short = with_iban_check("NO", "8601111794")  # 14, checksum right
    too_long = with_iban_check("LC", "A" * 31)  # 35, checksum right
    assert not iban_valid(too_short), "a 14-character IBAN passed"
    assert not iban_valid(too_long), "a 35-character IBAN passed"


def test_iban_reads_every_letter_in_base_36_and_wants_remainder_one() -> None:
    with_z = with_iban_check("GB", "ZZZZ12345678901234")
    assert iban_valid(with_z), f"{with_z}: Z is 35 in the ISO 13616 letter table"
    assert iban_valid(with_z.lower()), "IBANs are read case-blind"
    for remainder in (0, 2, 96):
        shaped = with_iban_check("FR", "30006000011234567890189", remainder=remainder)
        assert not iban_valid(shaped), f"remainder {remainder} accepted (only 1 is valid)"


def test_nir_key_must_match_exactly() -> None:
    import re

    from monGARS.mlops.datasets import pii

    for key, valid in (("91", True), ("90", False), ("92", False), ("97", False)):
        match = re.search(pii._NIR, f"NIR : 1 85 05 78 006 084 {key}.")
        assert match is not None
        assert nir_valid(match) is valid, f"key {key}: expected valid={valid}"


# ---- cards and phones: digit counts --------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "is_card"), [(12, False), (13, True), (16, True), (19, True), (20, False)]
)
def test_card_numbers_have_13_to_19_digits(length: int, is_card: bool) -> None:
    number = with_luhn_digit("4" + "0" * (length - 2))
    found = kinds(f"Numéro {number} reçu.")
    assert found == (["card"] if is_card else []), f"{length} Luhn-valid digits: {found}"


@pytest.mark.parametrize(
    ("text", "is_phone"),
    [
        ("+49 30 1234", True),  # 8 digits after "+": the E.164 minimum
        ("+49 30 123", False),  # 7
        ("0049 30 1234", True),  # 8 after the "00" prefix
        ("0049 30 123", False),  # 7 after it (9 digits written)
        ("+49 3012 3456 7890 1", True),  # 15: the E.164 maximum
        ("+49 3012 3456 7890 12", False),  # 16
    ],
)
def test_international_numbers_have_8_to_15_digits_after_the_prefix(
    text: str, is_phone: bool
) -> None:
    found = kinds(f"Appelez le {text} demain.")
    assert found == (["phone"] if is_phone else []), f"{text!r}: {found}"


# ---- secrets: entropy thresholds -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # Assigned values: entropy >= 3.0 bits a character, with a digit and a letter.
        ("api_key = 'Zx81Qa0Lw7Pz'", "Zx81Qa0Lw7Pz"),  # 12 distinct characters: 3.58 bits
        ("api_key = 'abcd1234abcd'", None),  # 2.92 bits: a pattern, not a key
        ("api_key = 'abcd1234abcd1234'", "abcd1234abcd1234"),  # 3.0 bits exactly: the bound
        ("password = 'ZxQaLwPzKmNbVc' (v2)", None),  # no digit in the value
        ("pin = '7305918264730591'", None),  # no letter in the value
        # Long hex: entropy >= 3.0.
        ("Hash " + "01234567ab" * 4, "01234567ab" * 4),  # 3.32 bits
        ("Hash " + "a1b2c3" * 6, None),  # 2.58 bits
        # Long base64-like: mixed case and entropy >= 4.2.
        ("Blob " + "AbCdEfGhIjKlMnOp0123456789" * 2, "AbCdEfGhIjKlMnOp0123456789" * 2),  # 4.70
        ("Blob " + "AbCdEfGh12345678" * 3, None),  # 4.0 bits
        ("Blob qr7vx2mk9pl4wz8tn3cb6yh1jf5gd0sa2eu7io4km9nv3xq8", None),  # one case only
    ],
)
def test_secret_thresholds(text: str, secret: str | None) -> None:
    matches = find_pii(text)
    found = [text[m.start : m.end] for m in matches if m.kind == "secret"]
    assert found == ([secret] if secret else []), f"{text!r}: {matches}"


def test_an_assigned_secret_redacts_the_value_and_keeps_its_name() -> None:
    text = "api_key = 'Zx81Qa0Lw7Pz'"
    assert redact(text, find_pii(text)) == "api_key = '[SECRET]'"


# ---- overlaps ------------------------------------------------------------------------------


def test_a_less_specific_match_before_or_touching_a_kept_one_is_kept_too() -> None:
    """Matches are chosen most specific first; one that ends before a chosen one starts, or
    starts where it ends, does not overlap it."""
    before = "Appelez le 06 12 34 56 78 ou écrivez à jean@exemple.fr."
    assert redact(before, find_pii(before)) == "Appelez le [PHONE] ou écrivez à [EMAIL]."
    after = "-----BEGIN RSA PRIVATE KEY-----06 12 34 56 78"
    assert redact(after, find_pii(after)) == "[SECRET][PHONE]"
    before_touching = "06 12 34 56 78-----BEGIN RSA PRIVATE KEY-----"
    assert redact(before_touching, find_pii(before_touching)) == "[PHONE][SECRET]"
