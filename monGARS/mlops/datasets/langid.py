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
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

RAW_FLOOR = float(np.finfo(np.float32).min)  # py3langid's score for a featureless text

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
_CODE_KEYWORDS = (
    *("def", "class", "import", "from", "return", "if", "elif", "for", "while", "function"),
    *("const", "let", "var"),
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


_CHUNKS_PER_STEP = 24  # words of text between two checks of a ``_strip_code`` limit


def _strip_code(text: str, limit: int | None = None) -> str:
    """The prose words of ``text``, joined by single spaces.

    With a ``limit``, it may stop early: the result is then a prefix of the whole one, at least
    ``limit`` characters long and with ``enough_prose`` (so both questions scoring asks of it,
    its first ``limit`` characters and whether it holds enough prose, get the whole one's answer).
    """
    chunks = text.split()
    words: list[str] = []
    for step in range(0, len(chunks), _CHUNKS_PER_STEP):
        for chunk in chunks[step : step + _CHUNKS_PER_STEP]:
            # Fast path: a plain lower-case or capitalised word (edge punctuation aside) is prose.
            core = chunk.strip(_EDGE_PUNCTUATION)
            if core.isalpha() and (core.islower() or core.istitle()):
                words.append(chunk)
            else:
                words.extend(_prose_pieces(chunk))
        if limit is not None and sum(map(len, words)) + len(words) - 1 >= limit:
            prefix = " ".join(words)
            if enough_prose(prefix):
                return prefix
            limit = None  # letters are missing: the whole text decides
    return " ".join(words)


def _may_hold_code_lines(text: str) -> bool:
    """False only when ``_CODE_LINE`` cannot match: no ``;{}``, tab, double space or keyword line.

    Most prose settles here, without the pattern's backtracking over every line.
    """
    if "  " in text or any(mark in text for mark in ";{}\t"):
        return True
    return any(line.lstrip().startswith(_CODE_KEYWORDS) for line in text.split("\n"))


def prose_text(text: str, limit: int | None = None) -> str:
    """The words of ``text`` that are prose: code, numbers, URLs (and quotes, if prose remains) out.

    camelCase/dotted/snake_case names, options, placeholders, `backticked` spans and acronyms
    are code or names, whatever the language of the sentence around them. With a ``limit``, the
    result may be cut after ``limit`` characters, where scoring stops reading (``_strip_code``).
    """
    text = text[:MAX_TEXT_CHARS]
    if "`" in text:
        text = _BACKTICKS.sub(" ", text)
    if _may_hold_code_lines(text):
        text = _CODE_LINE.sub(" ", text)
    if "://" in text or "www." in text or "WWW." in text:
        text = _URLS.sub(" ", text)
    if "<" in text:
        text = _TAGS.sub(" ", text)
    if "%" in text or "{" in text or "@" in text:
        text = _PLACEHOLDER.sub(" ", text)
    unquoted = _strip_code(_QUOTED.sub(" ", text), limit)
    if enough_prose(unquoted):
        return unquoted
    return _strip_code(text, limit)


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


def _padded(prose: str) -> str:
    """``prose`` case-folded, words joined by one space, a space on each side (n-gram input)."""
    return " " + " ".join(prose.casefold().split()) + " "


def ngram_buckets(prose: str) -> np.ndarray:
    """Hash buckets of the 1- to NGRAM_MAX-grams of ``prose`` (case-folded, space-padded words).

    Deterministic across processes and platforms (arithmetic on unsigned 64-bit code points, no
    salted ``hash()``), so the shipped weights index the same buckets everywhere.
    """
    buckets, _ = _batch_buckets([_padded(prose)])
    return np.concatenate(buckets).astype(np.uint64)


def _batch_buckets(padded: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per n-gram order: the buckets of every text's n-grams and the text each belongs to.

    The texts are hashed as one array of code points; an n-gram that would run past the end of
    its text into the next is left out, so each text gets exactly the buckets it gets alone.
    """
    lengths = np.fromiter(map(len, padded), dtype=np.int64, count=len(padded))
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    owner = np.repeat(np.arange(len(padded)), lengths)
    room = np.cumsum(lengths)[owner] - np.arange(len(codes))  # code points left in the text
    buckets, owners = [], []
    hashed = np.zeros(len(codes), dtype=np.uint64)
    for n in range(1, NGRAM_MAX + 1):
        if len(codes) < n:
            break
        hashed = hashed[: len(codes) - n + 1] * _PRIME + codes[n - 1 :]
        fits = room[: len(hashed)] >= n
        buckets.append((((hashed ^ _ORDER_SALT[n]) * _MIX) >> _SHIFT)[fits].astype(np.intp))
        owners.append(owner[: len(hashed)][fits])
    return buckets, owners


def _row_sums(
    weights: np.ndarray, owners: np.ndarray, rows: np.ndarray, count: int, scale: np.ndarray | None
) -> np.ndarray:
    """``sum(scale[i] * weights[rows[i]])`` per owner (``owners`` ascending), in float64.

    A sparse (owners x rows) matrix times the weights: one pass in C over the gathered rows,
    with no (entries x languages) temporary.
    """
    from scipy.sparse import csr_matrix  # here: a writer process that never scores skips it

    sizes = np.bincount(owners, minlength=count)
    pointers = np.concatenate(([0], np.cumsum(sizes)))
    values = np.ones(len(rows)) if scale is None else scale.astype(np.float64)
    matrix = csr_matrix((values, rows, pointers), shape=(count, len(weights)))
    return np.asarray(matrix @ weights, dtype=np.float64)


def _ngram_logits(proses: list[str]) -> np.ndarray:
    """The n-gram model's log-likelihoods, one row per prose, one column per language."""
    weights = ngram_model().weights
    logits = np.zeros((len(proses), len(SUPPORTED_LANGUAGES)), dtype=np.float64)
    for buckets, owners in zip(*_batch_buckets([_padded(p) for p in proses]), strict=True):
        logits += _row_sums(weights, owners, buckets, len(proses), None)
    return logits


def py3langid_identifier() -> Any:
    """py3langid's shipped model, restricted to the supported languages."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    model = LanguageIdentifier.from_model_file(MODEL_FILE)
    model.set_languages(list(SUPPORTED_LANGUAGES))
    return model


@dataclass(frozen=True)
class _ByteModel:
    """py3langid's model as arrays: its byte automaton and naive Bayes weights.

    Walking the automaton over a text's UTF-8 bytes visits states; a state may emit one feature
    (a byte n-gram). A text's score is ``log1p(count) @ feature weights + prior`` over the
    features it emitted, as ``LanguageIdentifier.rank`` computes it.
    """

    next_state: np.ndarray  # (states * 256,) uint32, indexed by row_start[state] + byte
    row_start: np.ndarray  # (states,)
    feature: np.ndarray  # (states,) the feature a state emits, -1 for none
    weights: np.ndarray  # (features, languages)
    prior: np.ndarray  # (languages,) float32


def _uint32_view(table: Any) -> np.ndarray:
    """py3langid's transition table as uint32, shared rather than copied when it already is."""
    if getattr(table, "itemsize", 0) == 4 and getattr(table, "typecode", "") in "IL":
        return np.frombuffer(table, dtype=np.uint32)
    return np.asarray(table, dtype=np.uint32)


@lru_cache(maxsize=1)
def _byte_model() -> _ByteModel:
    """py3langid's model as arrays (loaded once a process; the identifier itself is dropped)."""
    model = py3langid_identifier()
    if list(model.nb_classes) != list(SUPPORTED_LANGUAGES):
        raise ValueError(f"py3langid's classes {model.nb_classes} are not {SUPPORTED_LANGUAGES}")
    weights = np.asarray(model.nb_ptc, dtype=np.float64)
    return _ByteModel(
        next_state=_uint32_view(model.tk_nextmove),
        row_start=np.asarray(model.tk_row, dtype=np.intp) << 8,
        feature=np.asarray(model.tk_output, dtype=np.intp),
        weights=weights,
        prior=np.asarray(model.nb_pc, dtype=np.float32),
    )


def _utf8_for_py3langid(prose: str) -> bytes:
    """The bytes py3langid scores: all-capital texts lowered, NFC, UTF-8."""
    if prose.isupper():
        prose = prose.lower()
    return unicodedata.normalize("NFC", prose).encode("utf-8", "surrogatepass")


def _byte_model_logits(proses: list[str]) -> np.ndarray:
    """py3langid's raw log-likelihoods for each prose (rows) and language (columns).

    The automaton runs over every text at once, one byte position a step. A text that emits no
    feature scores ``RAW_FLOOR`` everywhere, as in py3langid.
    """
    model = _byte_model()
    encoded = [_utf8_for_py3langid(p) for p in proses]
    lengths = np.fromiter(map(len, encoded), dtype=np.intp, count=len(encoded))
    count, width = len(encoded), int(lengths.max(initial=0))
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    owner = np.repeat(np.arange(count), lengths)
    column = np.arange(len(data)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    by_position = np.zeros((width, count), dtype=np.uint8)
    by_position[column, owner] = data
    features = len(model.weights)
    # (text, feature) keys fit 32 bits below ~21,000 texts a batch, and sort faster so.
    key_type = np.int32 if count * features < 2**31 else np.int64
    state = np.zeros(count, dtype=np.uint32)
    emitted = np.empty((width, count), dtype=key_type)
    for position in range(width):
        state = model.next_state[model.row_start[state] + by_position[position]]
        emitted[position] = model.feature[state]
    emitted[np.arange(width)[:, None] >= lengths[None, :]] = -1  # past each text's end
    keys = (np.arange(count, dtype=key_type) * features + emitted)[emitted >= 0]
    keys, visits = np.unique(keys, return_counts=True)
    owners, emitted_features = np.divmod(keys, features)
    scale = np.log1p(visits.astype(np.float32))
    logits = _row_sums(model.weights, owners, emitted_features, count, scale) + model.prior
    logits[np.bincount(owners, minlength=count) == 0] = RAW_FLOOR
    return logits


@dataclass(frozen=True)
class NgramModel:
    """The shipped naive Bayes weights and the temperature calibrated on the dev split."""

    weights: np.ndarray  # (2**HASH_BITS, len(SUPPORTED_LANGUAGES)) log-probabilities
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
            # One row per bucket, float64: the sparse product gathers whole rows.
            weights=np.ascontiguousarray(data["weights"], dtype=np.float64),
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


_UNDECIDED_GUESS = LanguageGuess(UNKNOWN, 0.0, 0.0, {})


def probabilities(texts: list[str]) -> list[np.ndarray | None]:
    """Each text's probability per supported language, or None when it has too little prose.

    Both models' log-likelihoods are added (a product of the two models), then a softmax at the
    calibrated temperature; a batch is scored at once, with the same result as one by one.
    """
    proses = [prose_text(text, MAX_PROSE_CHARS) for text in texts]
    decided = [index for index, prose in enumerate(proses) if enough_prose(prose)]
    out: list[np.ndarray | None] = [None] * len(texts)
    if not decided:
        return out
    scored = [proses[index][:MAX_PROSE_CHARS] for index in decided]
    logits = _ngram_logits(scored) + _byte_model_logits(scored).astype(np.float64)
    logits /= ngram_model().temperature
    logits = np.exp(logits - logits.max(axis=1, keepdims=True))
    logits /= logits.sum(axis=1, keepdims=True)
    for row, index in enumerate(decided):
        out[index] = logits[row]
    return out


def identify(text: str) -> LanguageGuess:
    """Probability of each supported language for the prose of ``text``."""
    (probability,) = probabilities([text])
    if probability is None:
        return _UNDECIDED_GUESS
    scores = {lang: float(p) for lang, p in zip(SUPPORTED_LANGUAGES, probability, strict=True)}
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    (best, best_score), (_, second_score) = ranked[0], ranked[1]
    return LanguageGuess(best, best_score, (best_score - second_score) / best_score, scores)


def judge_all(
    texts: list[str],
    languages: tuple[str, ...] | list[str],
    min_probability: float = DEFAULT_MIN_PROBABILITY,
) -> list[str]:
    """``judge`` for a batch of texts, scored together."""
    columns = [SUPPORTED_LANGUAGES.index(lang) for lang in languages if lang in SUPPORTED_LANGUAGES]
    verdicts = []
    for probability in probabilities(texts):
        if probability is None:
            verdicts.append(UNDECIDED)
        else:
            share = float(probability[columns].sum())
            verdicts.append(ACCEPTED if share >= min_probability else REJECTED)
    return verdicts


def judge(
    text: str,
    languages: tuple[str, ...] | list[str],
    min_probability: float = DEFAULT_MIN_PROBABILITY,
) -> str:
    """``"accepted"``, ``"rejected"`` or ``"undecided"`` (too little prose to tell).

    Accepted when the languages in ``languages`` hold at least ``min_probability`` of the
    probability between them.
    """
    return judge_all([text], languages, min_probability)[0]


def keeps_language(
    text: str,
    languages: tuple[str, ...] | list[str],
    min_probability: float = DEFAULT_MIN_PROBABILITY,
    undecided: str = "keep",
) -> bool:
    """The cleaning filter's decision for one text, undecided texts following ``undecided``."""
    verdict = judge(text, languages, min_probability)
    return verdict == ACCEPTED or (verdict == UNDECIDED and undecided == "keep")
