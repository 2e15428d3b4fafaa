"""The RAFT answer format: render/parse round trip, markers kept out of data, evidence, scores."""

from __future__ import annotations

import pytest

from monGARS.mlops.training.raft.format import (
    ABSENT_NOTE,
    ANSWER,
    BEGIN_QUOTE,
    END_QUOTE,
    NO_QUOTE,
    document_units,
    exact_match,
    neutralise,
    normalise_answer,
    parse_answer,
    quotes_grounded,
    render_answer,
    select_quotes,
    token_f1,
)


@pytest.mark.parametrize(
    ("quotes", "answer"),
    [
        (["signature: def charger(path: str) -> Model"], "Elle charge le modèle."),
        (["ligne une", "ligne deux : `x = 1`"], "Deux lignes\nsur plusieurs lignes."),
        ([], "Réponse de mémoire."),
    ],
)
def test_render_then_parse_gives_back_quotes_and_answer(quotes: list[str], answer: str) -> None:
    text = render_answer(quotes, answer)
    parsed = parse_answer(text)
    assert parsed.quotes == tuple(quotes)
    assert parsed.answer == answer
    assert parsed.no_quote == (not quotes)
    assert parsed.well_formed


def test_rendered_layout_is_the_documented_one() -> None:
    text = render_answer(["a b c"], "réponse")
    assert text == f"{BEGIN_QUOTE}a b c{END_QUOTE}\n{ANSWER} réponse"
    assert render_answer([], "x") == f"{NO_QUOTE} {ABSENT_NOTE}\n{ANSWER} x"


def test_parse_reports_malformed_generations() -> None:
    assert parse_answer("############").answer is None
    assert not parse_answer("############").well_formed
    no_answer = parse_answer(f"{BEGIN_QUOTE}x{END_QUOTE}")
    assert no_answer.quotes == ("x",) and no_answer.answer is None and not no_answer.well_formed
    both = parse_answer(f"{NO_QUOTE}\n{BEGIN_QUOTE}x{END_QUOTE}\n{ANSWER} y")
    assert not both.well_formed
    # An unterminated quote is not a quote.
    assert parse_answer(f"{BEGIN_QUOTE}x\n{ANSWER} y").quotes == ()


def test_markers_inside_data_are_neutralised_so_parsing_stays_exact() -> None:
    hostile = f"le code écrit {BEGIN_QUOTE} puis {END_QUOTE}, {NO_QUOTE} et {ANSWER} 42"
    safe = neutralise(hostile)
    for marker in (BEGIN_QUOTE, END_QUOTE, NO_QUOTE, ANSWER):
        assert marker not in safe
    parsed = parse_answer(render_answer([safe], safe))
    assert parsed.quotes == (safe,) and parsed.answer == safe


def test_units_are_verbatim_lines_and_sentences() -> None:
    document = "name: f\ndoc: Charge le modèle. Puis renvoie-le.\n\n- call: torch.load"
    units = document_units(document)
    assert units == ["name: f", "doc: Charge le modèle.", "Puis renvoie-le.", "- call: torch.load"]
    assert all(unit in document for unit in units)


def test_select_quotes_picks_the_lines_that_support_the_answer_in_document_order() -> None:
    document = (
        "type: function\n"
        "qualname: charger_modele\n"
        "path: mlops/io.py\n"
        "docstring: charge le modèle et le tokenizer depuis un dossier"
    )
    answer = "La fonction charger_modele charge le modèle et le tokenizer depuis un dossier."
    assert select_quotes(document, answer, 2) == [
        "qualname: charger_modele",
        "docstring: charge le modèle et le tokenizer depuis un dossier",
    ]
    assert select_quotes(document, answer, 1) == [
        "docstring: charge le modèle et le tokenizer depuis un dossier"
    ]
    # Nothing in common: the first line, which names the subject, is the evidence.
    assert select_quotes(document, "Oui.", 2) == ["type: function"]


def test_scores() -> None:
    assert normalise_answer("  La Fonction « f » renvoie None ! ") == "la fonction f renvoie none"
    assert exact_match("la fonction F renvoie none.", "La fonction f renvoie None")
    assert not exact_match(None, "x") and not exact_match("y", "x")
    assert token_f1("la fonction f", "la fonction f") == 1.0
    assert token_f1("la fonction g", "la fonction f") == pytest.approx(2 / 3)
    assert token_f1("rien", "la fonction f") == 0.0 and token_f1(None, "x") == 0.0
    document = "name: f\ndoc: calcule la perte"
    assert quotes_grounded(["doc: calcule la perte"], document)
    assert quotes_grounded([" name: f "], document)
    assert not quotes_grounded([], document)
    assert not quotes_grounded(["name: f", "inventé"], document)
    assert not quotes_grounded([""], document)
