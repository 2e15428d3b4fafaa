"""MinHash + LSH near-duplicate removal and exact dedup, across sources and per kind."""

from __future__ import annotations

import random

import numpy as np
import pytest

from monGARS.mlops.datasets.dedup import Deduplicator
from monGARS.mlops.datasets.minhash import LshIndex, MinHasher, optimal_bands

_VOCABULARY = (
    "modèle données entraînement validation réseau couche poids gradient perte lot époque token "
    "phrase texte fichier dossier pipeline étape cluster nœud image conteneur mémoire calcul "
    "vecteur matrice rang adaptateur fusion export format quantification précision rappel score"
)
WORDS = _VOCABULARY.split()


def sentence(rng: random.Random, length: int) -> list[str]:
    return [rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(length)]


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def test_minhash_estimates_jaccard_of_shingle_sets() -> None:
    hasher = MinHasher(num_perm=256, shingle_size=1, seed=3)
    rng = random.Random(0)
    errors = []
    for overlap in (0.1, 0.3, 0.5, 0.7, 0.9):
        base = sentence(rng, 200)
        shared = base[: int(overlap * 200)]
        other = shared + sentence(rng, 200 - len(shared))
        truth = jaccard(set(base), set(other))
        sig = hasher.signatures([base, other])
        estimate = float((sig[0] == sig[1]).mean())
        errors.append(abs(estimate - truth))
    assert max(errors) < 0.1, errors


def test_signatures_are_deterministic_per_seed_and_batch_independent() -> None:
    texts = [["le", "chat", "dort"], ["un", "deux", "trois", "quatre"], []]
    one = MinHasher(num_perm=64, seed=5).signatures(texts)
    two = MinHasher(num_perm=64, seed=5).signatures(texts)
    assert one.dtype == np.uint32 and one.shape == (3, 64)
    assert np.array_equal(one, two)
    alone = MinHasher(num_perm=64, seed=5).signatures([texts[1]])
    assert np.array_equal(alone[0], one[1])
    assert not np.array_equal(MinHasher(num_perm=64, seed=6).signatures(texts), one)


@pytest.mark.parametrize(("threshold", "num_perm"), [(0.5, 128), (0.8, 128), (0.9, 256)])
def test_optimal_bands_put_the_lsh_s_curve_near_the_threshold(
    threshold: float, num_perm: int
) -> None:
    bands, rows = optimal_bands(threshold, num_perm)
    assert bands * rows <= num_perm
    knee = (1 / bands) ** (1 / rows)
    assert abs(knee - threshold) < 0.15


def test_lsh_flags_near_duplicates_and_keeps_distinct_texts() -> None:
    rng = random.Random(1)
    hasher = MinHasher(num_perm=128, shingle_size=3, seed=0)
    index = LshIndex(0.8, 128, seed=0)
    base = sentence(rng, 80)
    near = list(base)
    near[40] = "changé"  # one word in 80: Jaccard of 3-shingles ~ 0.93
    different = sentence(rng, 80)
    half = base[:40] + sentence(rng, 40)  # Jaccard ~ 0.3
    flags = index.add_batch(hasher.signatures([base, near, different, half]))
    assert flags == [False, True, False, False]
    assert index.size == 3  # duplicates are not stored


def test_deduplicator_exact_and_near_across_batches_and_kinds() -> None:
    dedup = Deduplicator(near_threshold=0.8, num_perm=128, shingle_size=3, seed=0)
    text = (
        "Le réglage fin LoRA ajoute de petites matrices de rang faible aux couches d'attention du "
        "modèle, et seules ces matrices sont entraînées pendant la phase d'adaptation. Les poids "
        "d'origine restent figés, ce qui réduit fortement la mémoire nécessaire et permet de "
        "garder plusieurs adaptateurs pour un seul modèle de base, chacun spécialisé dans une "
        "tâche."
    )
    assert dedup.check_batch("instruction", [text]) == [None]
    # A later batch (another source): same text modulo case/punctuation, then a one-word edit.
    later = [
        text.upper().replace(",", ""),
        text.replace("petites", "minuscules"),
        "Texte sans rapport.",
    ]
    assert dedup.check_batch("instruction", later) == ["duplicate_exact", "duplicate_near", None]
    # Kinds are indexed apart.
    assert dedup.check_batch("retrieval", [text]) == [None]
    assert dedup.removed == {"duplicate_exact": 1, "duplicate_near": 1}


def test_near_dedup_can_be_switched_off() -> None:
    dedup = Deduplicator(near_threshold=0.8, num_perm=64, shingle_size=3, seed=0, near=False)
    text = "un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze"
    assert dedup.check_batch("reasoning", [text, text.replace("six", "6"), text]) == [
        None,
        None,
        "duplicate_exact",
    ]


def test_batched_signatures_match_a_plain_python_minhash(monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = MinHasher(num_perm=32, shingle_size=3, seed=9)
    rng = random.Random(4)
    lists = [sentence(rng, n) for n in (0, 1, 2, 3, 7, 40, 300)]
    shingles, counts = hasher.shingle_batch(lists)
    assert counts.tolist() == [1, 1, 1, 1, 5, 38, 298]
    # Each record's shingles do not depend on the rest of the batch.
    offset = 0
    for tokens, count in zip(lists, counts, strict=True):
        alone, _ = hasher.shingle_batch([tokens])
        assert alone.tolist() == shingles[offset : offset + count].tolist()
        offset += count
    # The blocked numpy min equals (a*x + b) mod 2**64 >> 32, minimised in plain Python.
    a = [int(v) for v in hasher._a]
    b = [int(v) for v in hasher._b]
    signatures = hasher.signatures(lists)
    offset = 0
    for row, count in enumerate(counts):
        values = [int(v) for v in shingles[offset : offset + count]]
        expected = [
            min(((ai * x + bi) % 2**64) >> 32 for x in values) for ai, bi in zip(a, b, strict=True)
        ]
        assert signatures[row].tolist() == expected
        offset += count
    # Tiny blocks (a few records, or one record larger than a block) give the same result.
    from monGARS.mlops.datasets import minhash

    monkeypatch.setattr(minhash, "_BLOCK_ELEMENTS", 32 * 6)
    assert np.array_equal(hasher.signatures(lists), signatures)
