"""Benchmark the build_datasets corpus path at scale, and near-dedup implementations side by side.

Synthesises N French-looking instruction records (default 100,000) into a JSONL file, streaming,
with injected exact duplicates, near duplicates, English rows, card numbers and spam. Then:

1. the full corpus path of build_datasets on that file (read -> adapter -> clean -> dedup ->
   split writers), once with 1 worker and once with all the CPUs this container may use, each
   in a fresh process; prints records/s, the drop reasons, peak RSS of the main process and of
   every worker, and whether both runs wrote the same bytes;
2. near-duplicate detection alone on the first ``--near-dup-texts`` texts (word 3-grams,
   threshold 0.8, 128 permutations, first seen wins): this project (rensa signatures + its own
   LSH index with confirmation), the numpy MinHash it replaced (same LSH), rensa on its own
   (RMinHash + RMinHashLSH) and datasketch (MinHash + MinHashLSH); prints texts/s, how many
   each flagged and how often each takes the same decision as datasketch.

    .venv/bin/python bench/bench_datasets.py [--records 100000] [--workers 1,2] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from monGARS.mlops.cpus import available_cpus
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
_RECENT = 50_000  # duplicates copy one of the last 50,000 records (bounded memory at any N)


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


def synthesise(count: int, seed: int) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Records, each with what was injected (``"exact"``, ``"near"`` or None), streamed."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng, 20_000)
    recent: list[dict[str, Any]] = []
    for index in range(count):
        roll = rng.random()
        injected = None
        if index > 100 and roll < 0.05:
            source = recent[rng.randrange(len(recent))]
            record = dict(source, instruction=source["instruction"].upper())
            injected = "exact"
        elif index > 100 and roll < 0.10:
            source = recent[rng.randrange(len(recent))]
            words = source["output"].split()
            position = rng.randrange(len(words) - 1)
            words[position] = rng.choice(vocab)  # one word in ~60: Jaccard of 3-grams ~ 0.9
            record = dict(source, output=" ".join(words))
            injected = "near"
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
        record = {**record, "id": f"syn-{index}", "source": "synthetic"}
        if len(recent) < _RECENT:
            recent.append(record)
        else:
            recent[index % _RECENT] = record
        yield record, injected


def write_corpus(path: Path, count: int, seed: int) -> Counter[str]:
    injected: Counter[str] = Counter()
    with open(path, "w", encoding="utf-8") as handle:
        for record, kind in synthesise(count, seed):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            injected[kind or "fresh"] += 1
    return injected


# -- 1. the full corpus path, in a fresh process per worker count ------------------------------


def _peak_kib(pid: int | str) -> int:
    """VmHWM (peak resident set) of a live process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _full_path(corpus: str, out_dir: str, workers: int, results: Any) -> None:
    from monGARS.mlops.datasets.build import _CorpusBuilder
    from monGARS.mlops.datasets.config import load_datasets_config

    config = load_datasets_config(
        {
            "sources": [{"uri": corpus, "kind": "instruction", "name": "synthetic"}],
            "progress": False,
            "workers": workers,
        }
    )
    (spec,) = config.source_specs()
    builder = _CorpusBuilder(config, Path(out_dir), workers)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    stats = builder.run_source(spec)
    worker_peaks = [_peak_kib(pid) for pid in builder.runner.worker_pids()]
    worker_cpu = sum(_cpu_seconds(pid) for pid in builder.runner.worker_pids())
    outputs = builder.close()
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    main_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    digest = hashlib.sha256()
    for path in sorted(Path(out_dir).rglob("*.jsonl")):
        digest.update(path.read_bytes())
    results.put(
        {
            "elapsed": elapsed,
            "main_cpu": main_cpu,
            "worker_cpu": worker_cpu,
            "read": stats.read,
            "kept": stats.kept,
            "dropped": dict(stats.dropped),
            "outputs": outputs["instruction"],
            "main_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_peaks_mb": [peak / 1024 for peak in worker_peaks],
            "sha256": digest.hexdigest(),
        }
    )


def run_full_path(corpus: Path, workers: int, scratch: Path) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    out_dir = scratch / f"out-{workers}"
    process = context.Process(target=_full_path, args=(str(corpus), str(out_dir), workers, results))
    process.start()
    result = results.get()
    process.join()
    return result


# -- 2. near-dup detection alone ------------------------------------------------------------------


def project(token_lists: list[list[str]]) -> list[bool]:
    """What build_datasets ships: rensa signatures, then the project's LSH with confirmation."""
    hasher = MinHasher(num_perm=NUM_PERM, shingle_size=SHINGLE, seed=0)
    index = LshIndex(THRESHOLD, NUM_PERM, seed=0)
    flags: list[bool] = []
    for start in range(0, len(token_lists), BATCH):
        flags += index.add_batch(hasher.signatures(token_lists[start : start + BATCH]))
    return flags


def numpy_minhash(token_lists: list[list[str]]) -> list[bool]:
    """The numpy multiply-add-shift MinHash this project used before rensa (same LSH index)."""
    hasher = MinHasher(num_perm=NUM_PERM, shingle_size=SHINGLE, seed=0)
    rng = np.random.default_rng([0, 0x6D696E68])
    a = rng.integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=NUM_PERM, dtype=np.uint64)
    index = LshIndex(THRESHOLD, NUM_PERM, seed=0)
    flags: list[bool] = []
    for start in range(0, len(token_lists), BATCH):
        shingles, counts = hasher.shingle_batch(token_lists[start : start + BATCH])
        keys = shingles & np.uint64(0xFFFFFFFF)
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
        signatures = np.empty((len(counts), NUM_PERM), dtype=np.uint32)
        for first in range(0, len(counts), 64):
            last = min(first + 64, len(counts))
            lo, hi = offsets[first], offsets[last - 1] + counts[last - 1]
            block = keys[lo:hi]
            hashed = (a[:, None] * block[None, :] + b[:, None]) >> np.uint64(32)
            signatures[first:last] = np.minimum.reduceat(hashed, offsets[first:last] - lo, axis=1).T
        flags += index.add_batch(signatures)
    return flags


def _shingle_strings(tokens: list[str]) -> list[str]:
    if len(tokens) < SHINGLE:
        return [" ".join(tokens)]
    return [" ".join(tokens[i : i + SHINGLE]) for i in range(len(tokens) - SHINGLE + 1)]


def rensa_alone(token_lists: list[list[str]]) -> list[bool]:
    """rensa as its README uses it: RMinHash per text, RMinHashLSH query then insert."""
    import rensa

    lsh = rensa.RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=16)
    flags: list[bool] = []
    for start in range(0, len(token_lists), BATCH):
        batch = [_shingle_strings(tokens) for tokens in token_lists[start : start + BATCH]]
        for offset, signature in enumerate(rensa.RMinHash.from_token_sets(batch, NUM_PERM, 0)):
            if lsh.query(signature):
                flags.append(True)
                continue
            lsh.insert(start + offset, signature)
            flags.append(False)
    return flags


def datasketch_alone(token_lists: list[list[str]]) -> list[bool]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    flags: list[bool] = []
    # MinHash.generator reuses the permutations across records (datasketch's fast path).
    shingles = ([s.encode("utf-8") for s in _shingle_strings(tokens)] for tokens in token_lists)
    for position, signature in enumerate(MinHash.generator(shingles, num_perm=NUM_PERM)):
        if lsh.query(signature):
            flags.append(True)
            continue
        lsh.insert(str(position), signature)
        flags.append(False)
    return flags


def cleaned_token_lists(count: int, seed: int, workers: int) -> list[list[str]]:
    """Word tokens of the first ``count`` synthetic records that pass cleaning (before dedup)."""
    from monGARS.mlops.datasets.cleaning import CleaningRules
    from monGARS.mlops.datasets.parallel import BatchRunner, WorkPlan

    plan = WorkPlan(CleaningRules(), seed=0, near=False, near_threshold=THRESHOLD,
                    num_perm=NUM_PERM, shingle_size=SHINGLE)  # fmt: skip
    runner = BatchRunner(plan, workers)
    records = (record for record, _ in synthesise(count, seed))

    def batches() -> Iterator[tuple[list[dict[str, Any]], None]]:
        while batch := [record for _, record in zip(range(BATCH), records, strict=False)]:
            yield batch, None

    token_lists = []
    try:
        for cleaned, _ in runner.map("instruction", batches()):
            for line in cleaned.lines:
                text = content_text("instruction", json.loads(line))
                token_lists.append(dedup_key(text).split())
    finally:
        runner.close()
    return token_lists


def timed(run: Callable[[list[list[str]]], list[bool]], data: list[list[str]]) -> tuple:
    started = time.perf_counter()
    flags = run(data)
    return flags, time.perf_counter() - started


def _versions() -> str:
    from importlib.metadata import version

    return f"rensa {version('rensa')}, datasketch {version('datasketch')}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers",
        default=f"1,{available_cpus()}",
        help="comma-separated worker counts for the full path (default: 1 and all CPUs)",
    )
    parser.add_argument("--near-dup-texts", type=int, default=100_000)
    args = parser.parse_args()
    if args.records < 1000:
        parser.error("--records: use at least 1000 records")
    try:
        worker_counts = sorted({int(part) for part in args.workers.split(",") if part.strip()})
    except ValueError:
        parser.error("--workers: give comma-separated integers, e.g. 1,2")
    if not worker_counts or min(worker_counts) < 1:
        parser.error("--workers: give comma-separated integers >= 1, e.g. 1,2")

    print(f"CPUs this container may use: {available_cpus()}; {_versions()}")
    with tempfile.TemporaryDirectory(prefix="bench-datasets-") as scratch_name:
        scratch = Path(scratch_name)
        corpus = scratch / "synthetic.jsonl"
        started = time.perf_counter()
        injected = write_corpus(corpus, args.records, args.seed)
        print(
            f"synthesised {args.records:,} records in {time.perf_counter() - started:.1f} s "
            f"({injected['exact']:,} exact and {injected['near']:,} near duplicates injected; "
            f"{corpus.stat().st_size / 2**20:,.0f} MB of JSONL)"
        )

        print("\nfull corpus path (read, clean, dedup, write), fresh process per run:")
        runs = {}
        for workers in worker_counts:
            result = runs[workers] = run_full_path(corpus, workers, scratch)
            peaks = result["worker_peaks_mb"]
            worker_text = (
                f" + {len(peaks)} workers {max(peaks):,.0f} MB max ({sum(peaks):,.0f} MB sum)"
                if peaks
                else " (no worker process)"
            )
            total = result["main_peak_mb"] + sum(peaks)
            print(
                f"  workers={workers:<3} {args.records / result['elapsed']:>9,.0f} records/s  "
                f"{result['elapsed']:7.1f} s   peak RSS main {result['main_peak_mb']:,.0f} MB"
                f"{worker_text}, total {total:,.0f} MB"
            )
            print(
                f"{'':14}CPU per record: main process "
                f"{result['main_cpu'] / args.records * 1e6:,.0f} us, workers "
                f"{result['worker_cpu'] / args.records * 1e6:,.0f} us"
            )
        first = runs[worker_counts[0]]
        same = all(run["sha256"] == first["sha256"] for run in runs.values())
        print(f"  same output bytes for every worker count: {'yes' if same else 'NO'}")
        print(f"  kept {first['kept']:,} of {first['read']:,} ({first['outputs']})")
        for reason, count in sorted(first["dropped"].items(), key=lambda item: -item[1]):
            print(f"    {reason:<18} {count:>9,}")

    sample = min(args.near_dup_texts, args.records)
    token_lists = cleaned_token_lists(sample, args.seed, max(worker_counts))
    print(
        f"\nnear-dup detection alone on the {len(token_lists):,} texts of the first {sample:,} "
        f"records that pass cleaning (threshold {THRESHOLD}, {NUM_PERM} permutations, word "
        f"{SHINGLE}-grams, first seen wins; exact copies included, all must flag them):"
    )
    reference, reference_s = timed(datasketch_alone, token_lists)
    rows = [
        ("monGARS (rensa MinHash + own LSH)", project),
        ("monGARS numpy MinHash (replaced)", numpy_minhash),
        ("rensa alone (RMinHashLSH)", rensa_alone),
    ]
    for name, run in rows:
        flags, seconds = timed(run, token_lists)
        agree = sum(a == b for a, b in zip(flags, reference, strict=True)) / len(flags)
        print(
            f"  {name:<34} {len(flags) / seconds:>9,.0f} texts/s  {seconds:6.1f} s  "
            f"flagged {sum(flags):,}  same decision as datasketch on {agree:.2%}"
        )
    print(
        f"  {'datasketch':<34} {len(reference) / reference_s:>9,.0f} texts/s  "
        f"{reference_s:6.1f} s  flagged {sum(reference):,}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
