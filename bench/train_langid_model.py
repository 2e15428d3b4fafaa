"""Rebuild the language filter's n-gram model (monGARS/mlops/data/langid/ngram_nb.npz).

Training text: the gettext catalogues of Debian packages that the benchmark
(tests/fixtures/langid/bench.jsonl) does not use — each msgid (English) and its translations
into fr, es, de, it, pt (pt, pt_BR) and nl. Catalogues come from ``--deb-root`` (folders of
packages unpacked with ``dpkg-deb -x``, one folder per package, e.g. after
``apt-get download vlc-l10n gimp-data …``) and from ``/usr/share/locale`` when the owning package
(``dpkg -S``) is not one of the benchmark's. A pair is left out when its msgid, or either text,
is a benchmark text or the msgid of one (the same string ships in several packages), so no
benchmark row is trained on.

Texts go through ``langid.prose_text`` (what the filter scores) and ``langid.ngram_buckets``;
the model is multinomial naive Bayes with add-one smoothing, stored as float16 log-probabilities
centred per bucket. Packages are split by name (every fourth, sorted, is held out as **dev**):
the model is trained on the rest, and the dev split — never the benchmark — calibrates the
combination with py3langid: the temperature that makes the combined probabilities fit dev best
(log-loss), then the French share below which a text is dropped, the lowest that keeps at
most ``--dev-others-kept`` % of the dev split's decided other-language texts (20+ characters;
undecided texts follow their own rule and are reported apart). Prints the figures and the
``DEFAULT_MIN_PROBABILITY`` to set in langid.py.

    python bench/train_langid_model.py --deb-root /tmp/debs/root [--out ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from make_langid_bench import LOCALES, read_mo, tidy

from monGARS.mlops.datasets import langid

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "tests" / "fixtures" / "langid" / "bench.jsonl"
OUT = ROOT / "monGARS" / "mlops" / "data" / "langid" / "ngram_nb.npz"
LANGS = langid.SUPPORTED_LANGUAGES
FR = LANGS.index("fr")
MAX_TRAIN_CHARS = 400


def catalogues(deb_roots: list[Path], bench_packages: set[str]) -> tuple[list, list]:
    """(package, label, path) for training, and the benchmark packages' installed catalogues."""
    found = []
    for deb_root in deb_roots:
        for package_dir in sorted(p for p in deb_root.iterdir() if p.is_dir()):
            for label, folders in LOCALES.items():
                for folder in folders:
                    pattern = f"usr/share/locale/{folder}/LC_MESSAGES/*.mo"
                    found += [
                        (package_dir.name, label, p) for p in sorted(package_dir.glob(pattern))
                    ]
    installed = sorted(Path("/usr/share/locale").glob("*/LC_MESSAGES/*.mo"))
    owners: dict[str, str] = {}
    if installed:
        listing = subprocess.run(
            ["dpkg", "-S", *map(str, installed)], capture_output=True, text=True
        ).stdout
        for line in listing.splitlines():
            package, _, path = line.partition(": ")
            owners[path.strip()] = package.split(",")[0].split(":")[0].strip()
    bench_side = []
    for path in installed:
        label = next((lab for lab, fs in LOCALES.items() if path.parts[4] in fs), None)
        if label is None:
            continue
        package = owners.get(str(path), path.stem)
        if package in bench_packages:
            bench_side.append(path)
        elif package not in {p for p, _, _ in found}:
            found.append((package, label, path))
    found = [c for c in found if not c[2].stem.startswith("iso_") and "timezones" not in c[2].stem]
    return found, bench_side


def collect(deb_roots: list[Path]) -> list[tuple[str, str, str]]:
    """(label, package, text), deduplicated per label, with benchmark strings left out."""
    rows = [json.loads(line) for line in BENCH.open(encoding="utf-8")]
    bench_texts = {row["text"].casefold() for row in rows}
    bench_packages = {row["source"].removeprefix("gettext:") for row in rows}
    found, bench_side = catalogues(deb_roots, bench_packages)
    bench_msgids = set()
    for path in bench_side:
        for msgid, msgstr in read_mo(path).items():
            if tidy(msgid).casefold() in bench_texts or tidy(msgstr).casefold() in bench_texts:
                bench_msgids.add(tidy(msgid).casefold())
    seen: dict[str, set[str]] = defaultdict(set)
    out = []
    for package, label, path in found:
        for msgid, msgstr in read_mo(path).items():
            source, target = tidy(msgid), tidy(msgstr)
            if not source or not target or source.casefold() == target.casefold():
                continue
            keys = (source.casefold(), target.casefold())
            if keys[0] in bench_msgids or any(key in bench_texts for key in keys):
                continue
            for lab, text in ((label, target), ("en", source)):
                if len(text) <= MAX_TRAIN_CHARS and text.casefold() not in seen[lab]:
                    seen[lab].add(text.casefold())
                    out.append((lab, package, text))
    return out


def combined_logits(weights: np.ndarray, prose: str) -> np.ndarray:
    ranked = dict(langid._model().rank(prose[: langid.MAX_PROSE_CHARS]))
    nb = weights[langid.ngram_buckets(prose[: langid.MAX_PROSE_CHARS])].sum(0)
    return np.array([ranked[lang] for lang in LANGS]) + nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deb-root", type=Path, action="append", default=[])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--dev-others-kept", type=float, default=1.5)
    args = parser.parse_args(argv)
    rows = collect(args.deb_root)
    packages = sorted({package for _, package, _ in rows})
    dev_packages = set(packages[1::4])
    size = 2**langid.HASH_BITS
    counts = np.zeros((size, len(LANGS)), dtype=np.float64)
    pending: dict[str, list[np.ndarray]] = defaultdict(list)
    dev = []
    trained = 0

    def flush(label: str) -> None:
        if pending[label]:
            column = LANGS.index(label)
            counts[:, column] += np.bincount(np.concatenate(pending[label]), minlength=size)
            pending[label].clear()

    for label, package, text in rows:
        prose = langid.prose_text(text)
        if package in dev_packages:
            if len(text) >= 20:
                dev.append((label, prose))
        elif langid.enough_prose(prose):
            pending[label].append(langid.ngram_buckets(prose[: langid.MAX_PROSE_CHARS]))
            trained += 1
            if len(pending[label]) >= 20_000:
                flush(label)
    for label in LANGS:
        flush(label)
    log_probs = np.log((counts + 1.0) / (counts.sum(0) + size))
    weights = (log_probs - log_probs.mean(1, keepdims=True)).astype(np.float16)
    print(f"trained on {trained} texts, {len(packages) - len(dev_packages)} packages")
    print(f"dev: {len(dev)} texts of 20+ characters from {', '.join(sorted(dev_packages))}")

    decided = [(lab, p) for lab, p in dev if langid.enough_prose(p)]
    undecided_others = sum(lab != "fr" for lab, p in dev) - sum(lab != "fr" for lab, _ in decided)
    logits = np.array([combined_logits(weights.astype(np.float32), p) for _, p in decided])
    truth = np.array([LANGS.index(lab) for lab, _ in decided])
    best = None
    for temperature in np.geomspace(1, 200, 60):
        z = logits / temperature
        z -= z.max(1, keepdims=True)
        log_softmax = z - np.log(np.exp(z).sum(1, keepdims=True))
        loss = -log_softmax[np.arange(len(truth)), truth].mean()
        if best is None or loss < best[0]:
            best = (loss, temperature)
    temperature = float(best[1])
    z = logits / temperature
    p_fr = np.exp(z[:, FR] - z.max(1)) / np.exp(z - z.max(1, keepdims=True)).sum(1)
    others_total = sum(lab != "fr" for lab, _ in dev)
    french = truth == FR
    # The threshold decides only texts with enough prose: undecided ones follow their own rule,
    # so the bound is on the decided other-language texts.
    min_probability = 1.0
    for candidate in np.sort(p_fr[~french])[::-1]:
        if 100 * (p_fr[~french] >= candidate).sum() / (~french).sum() > args.dev_others_kept:
            break
        min_probability = float(candidate)
    french_dropped = (
        100 * (p_fr[french] < min_probability).sum() / sum(lab == "fr" for lab, _ in dev)
    )
    kept = (p_fr[~french] >= min_probability).sum() + undecided_others
    print(f"temperature {temperature:.2f} (dev log-loss {best[0]:.4f})")
    print(
        f"dev at min_probability {min_probability:.4g}: French dropped {french_dropped:.2f} %, "
        f"others kept {100 * kept / others_total:.2f} % "
        f"({100 * undecided_others / others_total:.2f} % by the undecided rule)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        weights=weights,
        languages=np.array(LANGS),
        hash_bits=np.int64(langid.HASH_BITS),
        ngram_max=np.int64(langid.NGRAM_MAX),
        temperature=np.float64(temperature),
        min_probability=np.float64(min_probability),
    )
    print(f"-> {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    print(f"set langid.DEFAULT_MIN_PROBABILITY = {min_probability:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
