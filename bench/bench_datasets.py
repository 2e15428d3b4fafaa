"""Benchmark the build_datasets cleaning + dedup path on a synthetic French corpus.

Makes N instruction records (default 100,000) with injected exact duplicates, near duplicates,
English rows, PII and spam; runs every record through ``clean_record`` and the cross-source
``Deduplicator`` exactly as ``build_datasets`` does, and prints records/s and peak memory. Then
runs near-duplicate detection alone twice on the same cleaned texts and the same word 3-gram
shingles: once with this project's MinHash + LSH, once with datasketch (MinHash + MinHashLSH,
the reference implementation), and prints the speed ratio and how many injected near duplicates
each one found.

    .venv/bin/python bench/bench_datasets.py [--records 100000] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any

from monGARS.mlops.datasets.cleaning import CleaningRules, clean_record
from monGARS.mlops.datasets.dedup import Deduplicator
from monGARS.mlops.datasets.minhash import LshIndex, MinHasher
from monGARS.mlops.datasets.normalize import dedup_key
from monGARS.mlops.datasets.records import content_text

THRESHOLD = 0.8
NUM_PERM = 128
SHINGLE = 3
BATCH = 512

_SYLLABLES = [consonant + vowel for consonant in "bcdflmnprstv" for vowel in "aeiou"]
_STARTS = ["Le", "La", "Chaque", "Notre", "Ce"]
_LINKS = ["de la", "du", "avec le", "pour la", "dans le", "sur la", "et le", "par le", "entre la"]
_VERBS = ["transforme", "entraîne", "compare", "décrit", "mesure", "prépare", "corrige", "suit"]
_ENGLISH = (
    "The model is trained on the data and the results are compared with the previous run so that "
    "we can see which of the settings works better for the users of this service."
)


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))) + "é")
    return sorted(words)


def _sentence(rng: random.Random, vocab: list[str]) -> str:
    parts = [rng.choice(_STARTS), rng.choice(vocab), rng.choice(_VERBS), "la", rng.choice(vocab)]
    for _ in range(rng.randint(2, 4)):
        parts += [rng.choice(_LINKS), rng.choice(vocab)]
    return " ".join(parts) + "."


def synthesise(count: int, seed: int) -> tuple[list[dict[str, Any]], set[int], set[int]]:
    """Records plus the indexes of injected exact and near duplicates."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng, 20_000)
    records: list[dict[str, Any]] = []
    exact, near = set(), set()
    for index in range(count):
        roll = rng.random()
        if index > 100 and roll < 0.05:
            source = records[rng.randrange(len(records))]
            record = dict(source, instruction=source["instruction"].upper())
            exact.add(index)
        elif index > 100 and roll < 0.10:
            source = records[rng.randrange(len(records))]
            words = source["output"].split()
            position = rng.randrange(len(words) - 1)
            words[position] = rng.choice(vocab)  # one word in ~60: Jaccard of 3-grams ~ 0.9
            record = dict(source, output=" ".join(words))
            near.add(index)
        else:
            output = " ".join(_sentence(rng, vocab) for _ in range(rng.randint(5, 7)))
            record = {"instruction": _sentence(rng, vocab), "input": "", "output": output}
            if roll < 0.12:
                record["output"] = _ENGLISH + " " + rng.choice(vocab)
                record["instruction"] = "Please describe the " + rng.choice(vocab) + " in English."
            elif roll < 0.13:
                record["output"] += " Carte : 4111 1111 1111 1111."
            elif roll < 0.14:
                record["output"] = "promo " * 40
        records.append({"id": f"syn-{index}", "source": "synthetic", **record})
    return records, exact, near


def full_path(records: list[dict[str, Any]]) -> tuple[float, Counter[str], list[str]]:
    """clean_record + Deduplicator in batches, as build_datasets runs them.

    Returns the time, the outcome counts and the texts that passed cleaning (before dedup).
    """
    rules = CleaningRules()
    dedup = Deduplicator(near_threshold=THRESHOLD, num_perm=NUM_PERM, shingle_size=SHINGLE, seed=0)
    reasons: Counter[str] = Counter()
    cleaned_texts: list[str] = []
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        texts = [content_text("instruction", record) for record in batch]
        for reason in dedup.check_batch("instruction", texts):
            reasons[reason or "kept"] += 1
        cleaned_texts.extend(texts)
        batch.clear()

    for record in records:
        cleaned = clean_record("instruction", record, rules)
        if cleaned.record is None:
            reasons[cleaned.reason or "?"] += 1
            continue
        batch.append(cleaned.record)
        if len(batch) >= BATCH:
            flush()
    flush()
    return time.perf_counter() - started, reasons, cleaned_texts


def _shingles(tokens: list[str]) -> list[bytes]:
    if len(tokens) < SHINGLE:
        return [" ".join(tokens).encode("utf-8")]
    return [" ".join(tokens[i : i + SHINGLE]).encode("utf-8") for i in range(len(tokens) - 2)]


def ours(token_lists: list[list[str]]) -> list[bool]:
    hasher = MinHasher(num_perm=NUM_PERM, shingle_size=SHINGLE, seed=0)
    index = LshIndex(THRESHOLD, NUM_PERM, seed=0)
    flags: list[bool] = []
    for start in range(0, len(token_lists), BATCH):
        flags += index.add_batch(hasher.signatures(token_lists[start : start + BATCH]))
    return flags


def reference(token_lists: list[list[str]]) -> list[bool]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    flags: list[bool] = []
    # MinHash.generator reuses the permutations across records (datasketch's fast path).
    signatures = MinHash.generator((_shingles(tokens) for tokens in token_lists), num_perm=NUM_PERM)
    for position, signature in enumerate(signatures):
        if lsh.query(signature):
            flags.append(True)
            continue
        lsh.insert(str(position), signature)
        flags.append(False)
    return flags


def measured(
    run: Callable[[list[list[str]]], list[bool]], data: list[list[str]], memory_sample: int
) -> tuple[list[bool], float, float]:
    """Flags and time on all of ``data``; traced peak memory on the first ``memory_sample``.

    tracemalloc slows allocation-heavy Python a lot, so memory is traced in a separate run.
    """
    started = time.perf_counter()
    flags = run(data)
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    run(data[:memory_sample])
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return flags, elapsed, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-sample", type=int, default=20_000)
    args = parser.parse_args()
    if args.records < 1000:
        parser.error("--records: use at least 1000 records")

    started = time.perf_counter()
    records, exact, near = synthesise(args.records, args.seed)
    print(
        f"synthesised {len(records):,} records in {time.perf_counter() - started:.1f} s "
        f"({len(exact):,} exact and {len(near):,} near duplicates injected)"
    )

    elapsed, reasons, cleaned_texts = full_path(records)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\nfull cleaning + dedup path: {len(records) / elapsed:,.0f} records/s "
        f"({elapsed:.1f} s for {len(records):,} records), peak RSS {rss_mb:,.0f} MB"
    )
    for reason, count in reasons.most_common():
        print(f"  {reason:<18} {count:>8,}")

    # Near-dup only, both implementations on the same cleaned texts and the same shingles (exact
    # duplicates included: both must flag them too, at similarity 1).
    token_lists = [dedup_key(text).split() for text in cleaned_texts]
    sample = min(len(token_lists), args.memory_sample)
    mine, mine_s, mine_mb = measured(ours, token_lists, sample)
    theirs, theirs_s, theirs_mb = measured(reference, token_lists, sample)
    agree = sum(a == b for a, b in zip(mine, theirs, strict=True)) / len(mine)
    print(
        f"\nnear-dup detection alone on {len(token_lists):,} texts "
        f"(threshold {THRESHOLD}, {NUM_PERM} permutations, word {SHINGLE}-grams; "
        f"traced peak memory on the first {sample:,}):"
    )
    print(
        f"  monGARS MinHash+LSH : {len(token_lists) / mine_s:>9,.0f} texts/s  "
        f"{mine_s:6.1f} s  traced peak {mine_mb:6.1f} MB  flagged {sum(mine):,}"
    )
    print(
        f"  datasketch 2.0.0    : {len(token_lists) / theirs_s:>9,.0f} texts/s  "
        f"{theirs_s:6.1f} s  traced peak {theirs_mb:6.1f} MB  flagged {sum(theirs):,}"
    )
    print(
        f"  speed ratio (datasketch time / monGARS time): {theirs_s / mine_s:.1f}x; "
        f"same decision on {agree:.2%} of texts"
    )
    print(
        f"  duplicates removed by the full path: {reasons['duplicate_exact']:,} exact + "
        f"{reasons['duplicate_near']:,} near (injected {len(exact):,} + {len(near):,}; copies "
        "of rows that cleaning drops are dropped by cleaning first)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
