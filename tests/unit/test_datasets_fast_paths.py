"""The cleaning path's fast paths give exactly what the plain definitions give.

Language scores are computed for a whole batch at once (py3langid's automaton walked over every
text in step, both models' weights summed by sparse products); spam checks skip work when an
exact bound already settles them; dedup reuses the spam check's tokens. Each is checked here
against the straightforward computation it replaces, on texts built to sit near the limits.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np

from monGARS.mlops.datasets import langid, spam
from monGARS.mlops.datasets.cleaning import CleaningRules, clean_batch, clean_record
from monGARS.mlops.datasets.normalize import dedup_key, dedup_words, word_tokens, words

BENCH = Path(__file__).resolve().parents[1] / "fixtures" / "langid" / "bench.jsonl"


def _bench_texts(count: int) -> list[str]:
    with BENCH.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [row["text"] for row in random.Random(0).sample(rows, count)]


def _scored_proses(texts: list[str]) -> list[str]:
    proses = [langid.prose_text(text) for text in texts]
    return [prose[: langid.MAX_PROSE_CHARS] for prose in proses if langid.enough_prose(prose)]


def test_batched_byte_model_scores_are_py3langids_own() -> None:
    proses = [*_scored_proses(_bench_texts(300)), "ÉCRIT TOUT EN CAPITALES, PAR EXEMPLE."]
    batch = langid._byte_model_logits(proses)
    model = langid.py3langid_identifier()
    for prose, row in zip(proses, batch, strict=True):
        expected = dict(model.rank(prose))
        reference = [expected[lang] for lang in langid.SUPPORTED_LANGUAGES]
        np.testing.assert_allclose(row, reference, rtol=1e-5, atol=1e-3)


def test_batched_ngram_scores_equal_each_text_scored_alone() -> None:
    proses = [*_scored_proses(_bench_texts(200)), "a", "ab", "été"]
    weights = langid.ngram_model().weights
    batch = langid._ngram_logits(proses)
    for prose, row in zip(proses, batch, strict=True):
        alone = weights[langid.ngram_buckets(prose).astype(np.intp)].sum(0, dtype=np.float64)
        np.testing.assert_allclose(row, alone, rtol=1e-9, atol=1e-6)


def test_a_batch_gets_the_verdicts_its_texts_get_one_by_one() -> None:
    texts = [*_bench_texts(120), "1234 5678", "", "`code` only()"]
    batch = langid.judge_all(texts, ["fr"])
    assert batch == [langid.judge(text, ["fr"]) for text in texts]
    assert {langid.ACCEPTED, langid.REJECTED, langid.UNDECIDED} <= set(batch)
    records = [
        {"id": f"r{i}", "source": "t", "instruction": "Traduis.", "input": "", "output": text}
        for i, text in enumerate(texts)
    ]
    rules = CleaningRules(language_undecided="drop")
    together = clean_batch("instruction", records, rules)
    alone = [clean_record("instruction", record, rules) for record in records]
    assert [(c.record, c.reason, c.notes) for c in together] == [
        (c.record, c.reason, c.notes) for c in alone
    ]


# ---- spam shortcuts against the plain definitions ----------------------------------------------

_ALPHABET = (
    list("abcdefghijklmnopqrstuvwxyzéèàçôABCDEFGHIJKLMNOPQRSTUVWXYZÉ0123456789_")
    + list("!?.,;:-*#@%&()[]{}<>/\\|~^$€«»…—ﬁ²ß")
    + [" "] * 12
    + ["\n", "\t", "\u2028"]
)
_WORDS = ["le", "la", "de", "chat", "maison", "été", "x", "promo", "ÉTÉ"]


def _texts_near_the_limits(count: int) -> list[str]:
    rng = random.Random(7)
    texts = []
    for _ in range(count):
        shape = rng.random()
        if shape < 0.35:  # random characters: symbol ratios on both sides of the limit
            text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 160)))
        elif shape < 0.7:  # few distinct words: repetition shares around their limits
            vocabulary = _WORDS[: rng.randint(2, len(_WORDS))]
            text = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(15, 60)))
        else:  # a run of one character, 15 to 25 long, anywhere in a sentence
            sentence = "Une phrase ordinaire, écrite pour le test des répétitions."
            run = rng.choice(_ALPHABET) * rng.randint(15, 25)
            cut = rng.randint(0, len(sentence))
            text = sentence[:cut] + run + sentence[cut:]
        texts.append(text)
    return texts


def _plain_symbol_heavy(text: str) -> bool:
    visible = sum(map(len, text.split()))
    return bool(visible) and len(re.findall(r"[^\w\s]", text)) > spam.MAX_SYMBOL_RATIO * visible


def _plain_repetitive(tokens: tuple[str, ...]) -> bool:
    if len(tokens) < 20:
        return False
    top = max(Counter(tokens).values()) / len(tokens)
    trigrams = len(tokens) - 2
    repeated = trigrams - len(set(zip(tokens, tokens[1:], tokens[2:], strict=False)))
    return top > spam.MAX_TOP_WORD_SHARE or repeated > spam.MAX_REPEATED_TRIGRAM_SHARE * trigrams


def test_spam_shortcuts_agree_with_the_plain_definitions() -> None:
    outcomes: Counter[str] = Counter()
    for text in _texts_near_the_limits(4000):
        run = spam._has_char_run(text)
        assert run == bool(re.search(r"(\S)\1{19,}", text)), text
        symbols = spam._symbol_heavy(text, spam._AsciiCounts(text))
        assert symbols == _plain_symbol_heavy(text), text
        repetitive = spam._repetitive(words(text))
        assert repetitive == _plain_repetitive(words(text)), text
        outcomes.update({"run": run, "symbols": symbols, "repetitive": repetitive})
    assert min(outcomes.values()) > 100  # every check fired often enough to mean something


def test_dedup_tokens_are_those_of_the_nfkc_form() -> None:
    for text in ["Ｆｉｃｈｉｅｒ ﬁnal ²", "Straße, été!", "déjà vu", "a_b c-d"]:
        folded = unicodedata.normalize("NFKC", text).casefold()
        assert dedup_words(text) == tuple(re.findall(r"\w+", folded))
        assert dedup_key(text) == " ".join(re.findall(r"\w+", folded))


# ---- word tokens and prose extraction ---------------------------------------------------------


def test_word_tokens_are_exactly_findalls() -> None:
    # Every code point, alone between separators: the split path and \w agree on each one.
    every = " ".join(chr(code) for code in range(0x110000))
    assert word_tokens(every) == tuple(re.findall(r"\w+", every))
    pieces = [*_ALPHABET, "’", "'", "œ", "ǅ", "٣", "漢字", "e\u0301", "\ud800", "\x1f", "\x85"]
    rng = random.Random(5)
    texts = ["", " ", "_", "déjà_vu", "l’été", "«oui»", "a\u2028b", *_bench_texts(200)]
    texts += ["".join(rng.choices(pieces, k=rng.randint(1, 60))) for _ in range(3000)]
    for text in texts:
        assert word_tokens(text) == tuple(re.findall(r"\w+", text)), repr(text)


def test_prose_cut_at_a_limit_answers_what_scoring_asks_as_the_whole_does() -> None:
    limit = langid.MAX_PROSE_CHARS
    bench = _bench_texts(300)
    texts = [
        *bench,
        *("\n".join(bench[start : start + 20]) for start in range(0, 300, 10)),  # long ones
        "« " * 400 + "mais voici enfin une phrase française",  # letters only after the limit
        "mot " * 400,
        "Appelle `f(x)` puis " * 60,
    ]
    cut_short = 0
    for text in texts:
        whole, cut = langid.prose_text(text), langid.prose_text(text, limit)
        assert whole.startswith(cut), text
        assert cut[:limit] == whole[:limit], text
        assert langid.enough_prose(cut) == langid.enough_prose(whole), text
        cut_short += len(cut) < len(whole)
    assert cut_short > 20  # the limit did cut texts short
