"""Language filter: French with quoted foreign text kept, other languages dropped, the rule for
undecidable records applied and counted, and the shipped benchmark's rates held."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from monGARS.mlops.datasets.cleaning import CleaningRules, clean_record
from monGARS.mlops.datasets.config import load_datasets_config
from monGARS.mlops.datasets.langid import (
    ACCEPTED,
    DEFAULT_MIN_PROBABILITY,
    HASH_BITS,
    NGRAM_MODEL_FILE,
    SUPPORTED_LANGUAGES,
    UNDECIDED,
    identify,
    judge,
    keeps_language,
    ngram_buckets,
    ngram_model,
    prose_text,
)
from monGARS.mlops.datasets.stats import SourceStats
from monGARS.mlops.datasets.summary import render_markdown
from monGARS.mlops.errors import ConfigError

BENCH = Path(__file__).resolve().parents[1] / "fixtures" / "langid" / "bench.jsonl"
RULES = CleaningRules()


def qa(question: str, answer: str) -> dict:
    return {"id": "q-1", "source": "test", "instruction": question, "input": "", "output": answer}


# French that quotes other languages: the shapes the issue found dropped as Dutch.
QUOTING_FRENCH = [
    ("Comment dit-on « thank you » en français ?", "On dit « merci » en français."),
    ("Comment dit-on « see you soon » en français ?", "On dit « à bientôt »."),
    ("Que veut dire « break a leg » en anglais ?", "C'est une façon de souhaiter bonne chance."),
    ("Traduis « Where is the station? » en français.", "« Où est la gare ? »"),
    ("Comment dit-on « gracias » en français ?", "On dit « merci »."),
    ("Que signifie « Guten Morgen » ?", "Cela veut dire « bonjour » en allemand."),
]
FOREIGN = {
    "en": ("How do you say « merci » in English?", "You say « thank you » in English."),
    "es": ("¿Cómo se dice « merci » en español?", "Se dice « gracias » en español."),
    "de": ("Wie sagt man « merci » auf Deutsch?", "Man sagt « danke » auf Deutsch."),
    "it": ("Come si dice « merci » in italiano?", "Si dice « grazie » in italiano."),
    "pt": ("Como se diz « merci » em português?", "Diz-se « obrigado » em português."),
    "nl": ("Hoe zeg je « merci » in het Nederlands?", "Je zegt « dank je » in het Nederlands."),
}


@pytest.mark.parametrize(("question", "answer"), QUOTING_FRENCH)
def test_french_quoting_other_languages_is_kept(question: str, answer: str) -> None:
    assert judge(f"{question}\n{answer}", ("fr",)) == ACCEPTED
    result = clean_record("instruction", qa(question, answer), RULES)
    assert result.record is not None and result.reason is None
    assert not result.notes  # decided, not let through by the undecided rule


def test_the_issue_example_is_french_not_dutch() -> None:
    text = "Comment dit-on « thank you » en français ?\nOn dit « merci » en français."
    guess = identify(text)
    assert guess.language == "fr" and guess.scores["fr"] > guess.scores["nl"]


@pytest.mark.parametrize("language", sorted(FOREIGN))
def test_other_languages_are_dropped_even_when_they_quote_french(language: str) -> None:
    question, answer = FOREIGN[language]
    assert identify(f"{question}\n{answer}").language == language
    result = clean_record("instruction", qa(question, answer), RULES)
    assert result.record is None and result.reason == "language"


def test_accepting_a_second_language_keeps_it() -> None:
    question, answer = FOREIGN["en"]
    rules = CleaningRules(languages=("fr", "en"))
    assert clean_record("instruction", qa(question, answer), rules).reason is None


def test_code_numbers_and_quotes_are_not_language_evidence() -> None:
    text = (
        "Appelle AutoTokenizer.from_pretrained avec `use_fast=True` et --dry-run : 42 % « hello »"
    )
    prose = prose_text(text)
    for gone in ("AutoTokenizer", "use_fast", "dry-run", "42", "hello"):
        assert gone not in prose
    assert "Appelle" in prose and "avec" in prose


# ---- undecidable records -------------------------------------------------------------------

UNDECIDABLE = [
    "def add(a, b):\n    return a + b",  # all code
    "1234 5678 9012 + 3.14 = 42",  # all numbers
    "x = np.zeros((3, 4)); y = x.T @ x",
    "Ok ! « Thank you very much »",  # too little prose outside the quote... and inside
]


@pytest.mark.parametrize("text", UNDECIDABLE[:3])
def test_text_without_prose_is_undecided(text: str) -> None:
    assert identify(text).language == "unknown"
    assert judge(text, ("fr",)) == UNDECIDED


def test_undecided_records_are_kept_by_default_and_counted() -> None:
    record = qa("print(sum(range(10)))", "45")
    result = clean_record("instruction", record, RULES)
    assert result.record is not None and result.reason is None
    assert result.notes == Counter({"language_undecided": 1})
    assert keeps_language("print(sum(range(10)))\n45", ("fr",))


def test_undecided_records_are_dropped_under_their_own_reason_when_asked() -> None:
    rules = CleaningRules(language_undecided="drop")
    result = clean_record("instruction", qa("print(sum(range(10)))", "45"), rules)
    assert result.record is None and result.reason == "language_undecided"
    # A decided French record is unaffected by the setting.
    question, answer = QUOTING_FRENCH[0]
    assert clean_record("instruction", qa(question, answer), rules).reason is None
    assert not keeps_language("print(sum(range(10)))\n45", ("fr",), undecided="drop")


def test_undecided_count_reaches_the_summary() -> None:
    stats = SourceStats("code_qa", "x.jsonl", "instruction", "native", read=3, kept=3)
    stats.notes.update({"language_undecided": 2})
    source = stats.as_dict()
    assert source["notes"] == {"language_undecided": 2}
    summary = {
        "totals": {"rows_read": 3, "records_kept": 3, "records_dropped": 0},
        "duplicates": {"duplicate_exact": 0, "duplicate_near": 0},
        "sources": [source],
        "outputs": {},
        "code": {"roots": [], "files": 0, "facts": {}, "dropped": {}, "parse_errors": []},
        "modules": {},
    }
    assert "| language_undecided 2 |" in render_markdown(summary)


def test_language_settings_are_validated_with_the_field_name() -> None:
    with pytest.raises(ConfigError) as caught:
        load_datasets_config({"language_undecided": "maybe", "language_min_probability": 2})
    text = str(caught.value)
    assert "language_undecided" in text and "'keep' or 'drop'" in text
    assert "language_min_probability" in text
    config = load_datasets_config({"language_undecided": "drop"})
    assert CleaningRules.from_config(config).language_undecided == "drop"


# ---- the shipped benchmark ------------------------------------------------------------------


def _bench() -> list[dict[str, str]]:
    with BENCH.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_shipped_benchmark_is_labelled_deduplicated_and_short() -> None:
    rows = _bench()
    assert len(rows) >= 2000
    assert {row["lang"] for row in rows} == set(SUPPORTED_LANGUAGES)
    assert all(10 <= len(row["text"]) <= 300 for row in rows)
    assert len({row["text"].casefold() for row in rows}) == len(rows)
    shapes = Counter(row["shape"] for row in rows if row["lang"] == "fr")
    assert all(shapes[shape] >= 10 for shape in ("quote", "code", "number", "entity"))


def _rates(rows: list[dict[str, str]]) -> tuple[float, float]:
    """(% of French dropped, % of other languages kept) on texts of 20+ characters."""
    french = [row for row in rows if row["lang"] == "fr" and len(row["text"]) >= 20]
    others = [row for row in rows if row["lang"] != "fr" and len(row["text"]) >= 20]
    dropped = sum(not keeps_language(row["text"], ("fr",)) for row in french)
    kept = sum(keeps_language(row["text"], ("fr",)) for row in others)
    return 100 * dropped / len(french), 100 * kept / len(others)


def test_benchmark_rates_meet_the_goal() -> None:
    """The issue's goal on texts of 20+ characters: <= 0.5 % of French dropped, <= 2 % of other
    languages kept (bench/bench_langid.py prints the figures; docs/datasets.md records them).

    The threshold was calibrated on a dev split of other packages' catalogues, not on this
    benchmark (bench/train_langid_model.py); record-shaped written rows are held apart too.
    """
    rows = _bench()
    written = [row for row in rows if row["source"] == "written"]
    french_dropped, others_kept = _rates(written)
    assert french_dropped <= 2.0 and others_kept <= 2.0
    french_dropped, others_kept = _rates(rows)
    assert french_dropped <= 0.5, french_dropped
    assert others_kept <= 2.0, others_kept


def test_shipped_ngram_model_fits_the_code_and_its_calibration() -> None:
    model = ngram_model()
    assert model.weights.shape == (2**HASH_BITS, len(SUPPORTED_LANGUAGES))
    assert abs(model.min_probability - DEFAULT_MIN_PROBABILITY) < 1e-4
    assert NGRAM_MODEL_FILE.stat().st_size < 5_000_000
    # Hashing is deterministic (no salted hash()): the same buckets in every process.
    buckets = ngram_buckets("Fichier XPM non valide")
    assert buckets.dtype == np.uint64 and int(buckets.max()) < 2**HASH_BITS
    assert ngram_buckets("fichier  XPM non valide").tolist() == buckets.tolist()


def test_interface_strings_keep_their_words() -> None:
    """Placeholders, mnemonics' neighbours and usage metavariables: words stay, code goes."""
    assert prose_text("%sCertificaatondertekening.") == "Certificaatondertekening."
    assert prose_text("Ativar/desativar le(s) fichier(s)").startswith("Ativar desativar")
    assert "nom valeur" in prose_text("declare [nom[=valeur] ...]")
    assert "fils-d'exécution" in prose_text("run-daemon [<nom>] [<fils-d'exécution>]")
    assert prose_text("<b>Entrez la ligne</b>") == "Entrez la ligne"
    assert prose_text("print(sum(range(10)))") == ""
