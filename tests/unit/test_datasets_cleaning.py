"""Cleaning filters: normalisation, PII with checksums, spam heuristics, language id, reasons."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from monGARS.mlops.datasets.cleaning import CleaningRules, clean_record
from monGARS.mlops.datasets.dedup import Deduplicator
from monGARS.mlops.datasets.langid import identify
from monGARS.mlops.datasets.normalize import dedup_key, normalize_text
from monGARS.mlops.datasets.pii import find_pii, iban_valid, luhn_valid, redact
from monGARS.mlops.datasets.records import KINDS, content_text
from monGARS.mlops.datasets.spam import spam_reason

RULES = CleaningRules()


def instruction(output: str, instruction_text: str = "Réponds à la question posée.") -> dict:
    return {
        "id": "t-1",
        "source": "test",
        "instruction": instruction_text,
        "input": "",
        "output": output,
    }


# ---- normalisation ------------------------------------------------------------------------


def test_normalize_composes_unicode_and_cleans_spacing_but_keeps_indentation() -> None:
    decomposed = "e\u0301te\u0301"  # é written as e + combining accent
    assert normalize_text(decomposed) == "été"
    assert unicodedata.is_normalized("NFC", normalize_text(decomposed))
    assert normalize_text("Bon\u200bjour\u00a0!\u202f?") == "Bonjour ! ?"
    assert normalize_text("  a   b  \r\n\n\n\nc\t ") == "a b\n\nc"
    code = "def f(x):\n    if x:\n        return 1"
    assert normalize_text(code) == code
    assert normalize_text("ligne\x00 avec\x07 contrôles") == "ligne avec contrôles"


def test_dedup_key_ignores_case_punctuation_and_spacing() -> None:
    assert dedup_key("Bonjour,   le MONDE !") == dedup_key("bonjour le monde")
    assert dedup_key("Bonjour le monde") != dedup_key("Bonsoir le monde")


# ---- PII ----------------------------------------------------------------------------------


def test_checksums_accept_valid_numbers_and_refuse_altered_ones() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("5555555555554444")
    assert not luhn_valid("4111111111111112")
    assert iban_valid("FR76 3000 6000 0112 3456 7890 189")
    assert iban_valid("DE89370400440532013000")
    assert not iban_valid("FR76 3000 6000 0112 3456 7890 188")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Écrivez à marie.curie@exemple.fr pour la suite.", "email"),
        ("Appelez le 06 12 34 56 78 demain.", "phone"),
        ("Appelez le 01.23.45.67.89 demain.", "phone"),
        ("Numéro : +33 6 12 34 56 78.", "phone"),
        ("Numéro : 0033 1 23 45 67 89.", "phone"),
        ("Bureau de New York : +1 415 555 2671.", "phone"),
        ("Bureau de Berlin : +49 30 1234567.", "phone"),
        ("Ma carte : 4111 1111 1111 1111.", "card"),
        ("Ma carte : 5555-5555-5555-4444.", "card"),
        ("IBAN : FR76 3000 6000 0112 3456 7890 189.", "iban"),
        ("IBAN : DE89370400440532013000.", "iban"),
        ("NIR : 1 85 05 78 006 084 91.", "nir"),
        ("NIR : 269029934173285.", "nir"),
        ("NIR corse : 2 69 05 2A 123 456 88.", "nir"),
        ("Jeton : hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789.", "secret"),
        ("Clé : sk-proj-4fG7hJ2kL9mN3pQ8rS1tU6vW0xY5zA.", "secret"),
        ("AWS : AKIAIOSFODNN7EXAMPLE est la clé.", "secret"),
        (
            "Empreinte 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 ici.",
            "secret",
        ),
        ("api_key = 'Zx81Qa0Lw7Pz3Km5Nb2Vc9'", "secret"),
        ("Blob qR7vX2mK9pL4wZ8tN3cB6yH1jF5gD0sA2eU7iO4kM9nV3xQ8 fin.", "secret"),
    ],
)
def test_each_pii_kind_is_found(text: str, kind: str) -> None:
    kinds = [match.kind for match in find_pii(text)]
    assert kinds == [kind], kinds


@pytest.mark.parametrize(
    "text",
    [
        "La prise de la Bastille date du 14 juillet 1789.",
        "Une couche de 4 096 sur 4 096 compte 16 777 216 poids.",
        "Installez torch==2.13.0 et transformers==5.24.0.",
        "Le numéro 4111 1111 1111 1112 ne passe pas la clé de Luhn.",
        "NIR avec une mauvaise clé : 1 85 05 78 006 084 90.",
        "Le fichier monGARS/mlops/datasets/build.py écrit le dossier corpora.",
        "Le décorateur @dataclass crée __init__ automatiquement.",
        "La commande est git rebase -i HEAD~3, puis git push --force-with-lease.",
    ],
)
def test_ordinary_text_with_numbers_is_not_pii(text: str) -> None:
    assert find_pii(text) == []


def test_redaction_replaces_matches_with_placeholders() -> None:
    text = "Contact : jean@exemple.fr ou 06 12 34 56 78."
    assert redact(text, find_pii(text)) == "Contact : [EMAIL] ou [PHONE]."


def test_clean_record_redacts_contacts_and_drops_financial_and_secret_records() -> None:
    kept = clean_record(
        "instruction",
        instruction("Pour toute question, écrivez à jean@exemple.fr ou appelez le 06 12 34 56 78."),
        RULES,
    )
    assert kept.record is not None
    assert "[EMAIL]" in kept.record["output"] and "[PHONE]" in kept.record["output"]
    assert kept.redacted == {"email": 1, "phone": 1}
    for output, reason in [
        ("Le paiement se fait avec la carte 4111 1111 1111 1111 dès demain.", "pii_card"),
        ("Le virement part du compte FR76 3000 6000 0112 3456 7890 189 ce soir.", "pii_iban"),
        ("Le numéro de sécurité sociale est 1 85 05 78 006 084 91 pour ce dossier.", "pii_nir"),
        (
            "Utilisez le jeton hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789 pour vous connecter.",
            "pii_secret",
        ),
    ]:
        result = clean_record("instruction", instruction(output), RULES)
        assert (result.record, result.reason) == (None, reason)
    # pii_drop is configurable: with e-mails in the drop list the record goes.
    strict = CleaningRules(pii_drop=frozenset({"email"}))
    dropped = clean_record(
        "instruction", instruction("Écrivez à jean@exemple.fr pour la suite."), strict
    )
    assert dropped.reason == "pii_email"


# ---- spam ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Visitez " + " ".join(f"https://exemple.fr/page{i}" for i in range(10)), "spam_urls"),
        ("Voir https://exemple.fr/un/lien/tres/long/vers/une/page/quelconque ici", "spam_urls"),
        ("C'est génial !!!!!!!!!!!!!!!!!!!!!!!!!!!!", "spam_repetition"),
        ("achetez " * 30, "spam_repetition"),
        ("le chat dort sur le tapis " * 6, "spam_repetition"),
        (
            "\n".join(["Promo du jour", "Promo du jour", "Promo du jour", "Promo du jour", "fin"]),
            "spam_repetition",
        ),
        ("$$$ ### @@@ %%% &&& *** +++ ~~~ ^^^ mot", "spam_symbols"),
        (
            "CECI EST UN MESSAGE ÉCRIT ENTIÈREMENT EN MAJUSCULES POUR ATTIRER L'ATTENTION",
            "spam_uppercase",
        ),
        ("Argent facile : cliquez ici et recevez votre cadeau.", "spam_keywords"),
    ],
)
def test_spam_heuristics_give_their_reason(text: str, reason: str) -> None:
    assert spam_reason(text) == reason


@pytest.mark.parametrize(
    "text",
    [
        "Le réglage fin LoRA ajoute de petites matrices de rang faible aux couches d'attention.",
        "def somme_des_carres(valeurs):\n    return sum(v * v for v in valeurs)",
        "SELECT client_id, COUNT(*) AS n\nFROM commandes\nGROUP BY client_id;",
        "Cliquez ici pour ouvrir le menu des réglages.",
        "La documentation est sur https://docs.python.org/fr/3/ et elle est très complète.",
    ],
)
def test_ordinary_text_and_code_are_not_spam(text: str) -> None:
    assert spam_reason(text) is None


# ---- language -----------------------------------------------------------------------------

FOREIGN = {
    "en": [
        "The model learns quickly when the data is clean and well balanced.",
        "Please write a function that returns the sum of the squares of a list.",
        "What is the capital city of Brittany and how many people live there?",
    ],
    "es": [
        "El modelo aprende rápidamente cuando los datos están limpios y equilibrados.",
        "Por favor, escribe una función que devuelva la suma de los cuadrados de una lista.",
        "¿Cuál es la capital de Bretaña y cuántas personas viven allí?",
    ],
    "de": [
        "Das Modell lernt schnell, wenn die Daten sauber und ausgewogen sind.",
        "Bitte schreibe eine Funktion, die die Summe der Quadrate einer Liste zurückgibt.",
        "Was ist die Hauptstadt der Bretagne und wie viele Menschen leben dort?",
    ],
    "it": ["Il modello impara rapidamente quando i dati sono puliti ed equilibrati."],
}
FRENCH = [
    "Le modèle apprend vite quand les données sont propres et équilibrées.",
    "Écris une fonction qui renvoie la somme des carrés d'une liste.",
    "Quelle est la capitale de la Bretagne et combien de personnes y vivent ?",
    "Utilisez AutoModelForCausalLM.from_pretrained avec l'identifiant du modèle.",
    "Traduis en français : « The model is loaded on the GPU. »\nLe modèle est chargé sur le GPU.",
]


@pytest.mark.parametrize("text", FRENCH)
def test_french_is_identified(text: str) -> None:
    guess = identify(text)
    assert guess.language == "fr" and guess.scores["fr"] >= RULES.language_min_probability


@pytest.mark.parametrize(
    ("language", "text"), [(lang, t) for lang, ts in FOREIGN.items() for t in ts]
)
def test_other_languages_are_identified_and_rejected(language: str, text: str) -> None:
    assert identify(text).language == language
    result = clean_record("instruction", instruction(text, text), RULES)
    assert result.reason == "language"


def test_text_without_words_is_unknown() -> None:
    assert identify("1234 5678 != 42").language == "unknown"


# ---- record level -------------------------------------------------------------------------


def test_length_bounds_and_schema_give_their_reasons() -> None:
    assert clean_record("instruction", instruction("Oui.", "Ok ?"), RULES).reason == "too_short"
    long_rules = CleaningRules(max_chars=60)
    text = "Le modèle apprend vite quand les données sont propres et bien équilibrées."
    assert clean_record("instruction", instruction(text), long_rules).reason == "too_long"
    blank = instruction("\u200b  \n ")  # nothing left after normalisation
    assert clean_record("instruction", blank, RULES).reason == "invalid_fields"
    broken = {
        "id": "c",
        "source": "t",
        "messages": [
            {"role": "user", "content": "Bonjour, une question sur le modèle."},
            {"role": "user", "content": "Il y a quelqu'un pour répondre ?"},
        ],
    }
    assert clean_record("conversation", broken, RULES).reason == "invalid_fields"


def test_shipped_sample_corpus_passes_every_filter_and_has_no_duplicates(
    sample_corpus_dir: Path,
) -> None:
    counts = {}
    dedup = Deduplicator(near_threshold=0.8, num_perm=128, shingle_size=3, seed=0)
    for kind in KINDS:
        rows = [
            json.loads(line)
            for line in (sample_corpus_dir / f"{kind}.jsonl")
            .read_text(encoding="utf-8")
            .splitlines()
            if line.strip()
        ]
        ids = [row["id"] for row in rows]
        assert len(ids) == len(set(ids)), kind
        cleaned = []
        for row in rows:
            result = clean_record(kind, {**row, "source": "sample"}, RULES)
            assert result.record is not None, (row["id"], result.reason)
            assert result.redacted == {}, row["id"]
            assert result.record == {**row, "source": "sample"}, row["id"]  # already clean
            cleaned.append(result.record)
        assert dedup.check_batch(kind, [content_text(kind, r) for r in cleaned]) == [None] * len(
            rows
        )
        counts[kind] = len(rows)
    assert counts["instruction"] >= 40 and counts["retrieval"] >= 30
    assert counts["reasoning"] >= 15 and counts["conversation"] >= 15
