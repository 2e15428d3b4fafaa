"""Language identification for build_datasets, measured on the shipped labelled benchmark.

Reads tests/fixtures/langid/bench.jsonl (built by bench/make_langid_bench.py: gettext catalogues
of Debian packages plus written French that quotes other languages, code, numbers and named
entities) and runs every detector on the same texts, keeping French (``languages=["fr"]``):

* ``project``: the language filter build_datasets applies (``langid.keeps_language``), the rule
  for undecidable texts included;
* ``before``: the function-word + trigram scorer the project shipped until this filter (read
  from git at ``LEGACY_REV``; skipped outside a git checkout);
* ``py3langid``: langid.py's model (offline, inside the package), restricted to the 7 languages
  and over all 97 of its languages;
* ``lingua``: lingua-language-detector (offline models inside the wheel), the 7 languages, low
  and high accuracy modes;
* ``cld3``: cld3-py (Compact Language Detector v3, model compiled into the extension).

A library that is not installed is skipped with a note (only py3langid is a project dependency:
``pip install lingua-language-detector==2.1.1 cld3-py==3.1.0`` for the full comparison).
Per language it prints the share of French dropped (``fr``) or of other-language texts kept
(others), for texts of 20 characters or more (the goal: <= 0.5 % of French dropped, <= 2 % of
others kept) and over all lengths, then the time per 10,000 texts (one core, after a warm-up).

    .venv/bin/python bench/bench_langid.py [--data tests/fixtures/langid/bench.jsonl] [--errors N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from monGARS.mlops.datasets.langid import keeps_language

DATA = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "langid" / "bench.jsonl"
LANGUAGES = ("fr", "en", "es", "de", "it", "pt", "nl")
MIN_GOAL_CHARS = 20
GOAL_FR_DROPPED = 0.5  # percent
GOAL_OTHERS_KEPT = 2.0  # percent

Keep = Callable[[str], bool]


def project() -> Keep:
    return lambda text: keeps_language(text, ("fr",))


def py3langid_detector(restricted: bool) -> Keep:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
    if restricted:
        identifier.set_languages(list(LANGUAGES))
    return lambda text: identifier.classify(text)[0] == "fr"


def lingua_detector(low_accuracy: bool) -> Keep:
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    codes = [getattr(IsoCode639_1, code.upper()) for code in LANGUAGES]
    builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_preloaded_language_models()
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    detector = builder.build()

    def keep(text: str) -> bool:
        found = detector.detect_language_of(text)
        return found is not None and found.iso_code_639_1.name.lower() == "fr"

    return keep


def cld3_detector() -> Keep:
    import gcld3

    identifier = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)
    return lambda text: identifier.FindLanguage(text=text).language == "fr"


# ---- the detector the project shipped before (read from git, for comparison) ----------------
LEGACY_REV = "d68c308"  # last commit with the function-word + trigram scorer


def legacy_detector() -> Keep:
    source = subprocess.run(
        ["git", "show", f"{LEGACY_REV}:monGARS/mlops/datasets/langid.py"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
    )
    if source.returncode != 0:
        raise ImportError(f"git show {LEGACY_REV} failed", name=f"langid.py at {LEGACY_REV}")
    module = types.ModuleType("legacy_langid")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source.stdout, f"langid.py@{LEGACY_REV}", "exec"), module.__dict__)
    return lambda text: module.is_language(text, ("fr",), 0.1)


DETECTORS: dict[str, Callable[[], Keep]] = {
    "project": project,
    "before (function words)": legacy_detector,
    "py3langid (7 languages)": lambda: py3langid_detector(restricted=True),
    "py3langid (97 languages)": lambda: py3langid_detector(restricted=False),
    "lingua (7, low accuracy)": lambda: lingua_detector(low_accuracy=True),
    "lingua (7, high accuracy)": lambda: lingua_detector(low_accuracy=False),
    "cld3": cld3_detector,
}


def load(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def rates(rows: list[dict[str, str]], kept: list[bool], min_chars: int) -> dict[str, float]:
    """Percent of French dropped (key fr) and of each other language kept."""
    totals: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    for row, keep in zip(rows, kept, strict=True):
        if len(row["text"]) < min_chars:
            continue
        totals[row["lang"]] += 1
        wrong[row["lang"]] += keep != (row["lang"] == "fr")
    return {lang: 100 * wrong[lang] / totals[lang] for lang in LANGUAGES if totals[lang]}


def others_kept(rows: list[dict[str, str]], kept: list[bool], min_chars: int) -> float:
    pairs = [
        (row, keep)
        for row, keep in zip(rows, kept, strict=True)
        if row["lang"] != "fr" and len(row["text"]) >= min_chars
    ]
    return 100 * sum(keep for _, keep in pairs) / max(len(pairs), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--errors", type=int, default=0, help="print N misjudged texts each")
    parser.add_argument("--only", default="", help="comma-separated detector name prefixes")
    args = parser.parse_args(argv)
    rows = load(args.data)
    texts = [row["text"] for row in rows]
    long_count = sum(len(text) >= MIN_GOAL_CHARS for text in texts)
    counts = Counter(row["lang"] for row in rows)
    print(f"{len(rows)} texts ({long_count} of {MIN_GOAL_CHARS}+ characters) from {args.data}")
    print("  " + ", ".join(f"{lang} {counts[lang]}" for lang in LANGUAGES))
    print(
        f"goal on {MIN_GOAL_CHARS}+ characters: fr dropped <= {GOAL_FR_DROPPED} %, "
        f"others kept <= {GOAL_OTHERS_KEPT} %\n"
    )
    header = ["detector", "length", *LANGUAGES, "others", "ms/10k"]
    print(" | ".join(f"{h:>9}" if i else f"{h:<26}" for i, h in enumerate(header)))
    wanted = [prefix.strip() for prefix in args.only.split(",") if prefix.strip()]
    for name, factory in DETECTORS.items():
        if wanted and not any(name.startswith(prefix) for prefix in wanted):
            continue
        try:
            keep = factory()
        except ImportError as error:
            print(f"{name:<26} | not installed ({error.name})")
            continue
        for text in texts[:200]:  # warm-up: lazy loads, caches
            keep(text)
        start = time.perf_counter()
        kept = [keep(text) for text in texts]
        per_10k = (time.perf_counter() - start) / len(texts) * 10_000
        for label, min_chars in ((f"{MIN_GOAL_CHARS}+", MIN_GOAL_CHARS), ("all", 0)):
            by_lang = rates(rows, kept, min_chars)
            cells = [f"{by_lang.get(lang, 0):>8.2f}%" for lang in LANGUAGES]
            others = f"{others_kept(rows, kept, min_chars):>8.2f}%"
            timing = f"{per_10k * 1000:>9.0f}" if min_chars else ""
            print(
                " | ".join([f"{name if min_chars else '':<26}", f"{label:>9}", *cells, others])
                + (f" | {timing}" if timing else "")
            )
        if args.errors:
            wrong = [
                row
                for row, keep_it in zip(rows, kept, strict=True)
                if keep_it != (row["lang"] == "fr") and len(row["text"]) >= MIN_GOAL_CHARS
            ]
            for row in wrong[: args.errors]:
                print(
                    f"    {row['lang']} {'kept' if row['lang'] != 'fr' else 'dropped'}: "
                    f"{row['text'][:110]!r}"
                )
    print("\nfr column: French dropped; other columns: that language kept; others: all non-French")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
