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


def test_batched_signatures_match_rensa_record_by_record() -> None:
    import rensa

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
    # The one-call batch digest equals rensa's digest of each record's shingle set alone.
    signatures = hasher.signatures(lists)
    assert signatures.dtype == np.uint32 and signatures.shape == (7, 32)
    offset = 0
    for row, count in enumerate(counts):
        own = [int(value) for value in shingles[offset : offset + count]]
        alone = rensa.RMinHash.digest_matrix_from_token_hash_sets([own], 32, hasher.rensa_seed)
        assert signatures[row].tolist() == alone.to_rows()[0]
        offset += count
    assert hasher.signatures([]).shape == (0, 32)


def corpus_with_near_duplicates(
    count: int, seed: int, length: tuple[int, int] = (60, 90)
) -> list[list[str]]:
    """Token lists: fresh sentences, and copies of earlier ones with one word changed (word
    3-gram Jaccard >= 0.9: near duplicates) or 15 to 25 words changed (about 0.3: distinct)."""
    rng = random.Random(seed)
    texts: list[list[str]] = []
    originals: list[list[str]] = []
    for _ in range(count):
        roll = rng.random()
        if originals and roll < 0.3:
            copy = list(originals[rng.randrange(len(originals))])
            for _ in range(1 if roll < 0.15 else rng.randint(15, 25)):
                copy[rng.randrange(len(copy))] = rng.choice(WORDS) + str(rng.randrange(50))
            texts.append(copy)
        else:
            originals.append(sentence(rng, rng.randint(*length)))
            texts.append(originals[-1])
    return texts


def test_batched_lsh_decides_as_one_record_at_a_time_across_table_growth() -> None:
    texts = corpus_with_near_duplicates(3000, seed=2)
    hasher = MinHasher(num_perm=128, shingle_size=3, seed=0)
    signatures = hasher.signatures(texts)
    one_by_one = LshIndex(0.8, 128, seed=0)
    expected = [one_by_one.add_batch(signatures[i : i + 1])[0] for i in range(len(texts))]
    batched = LshIndex(0.8, 128, seed=0)
    flags = []
    for start in range(0, len(texts), 500):  # copies inside a batch and across batches
        flags += batched.add_batch(signatures[start : start + 500])
    assert flags == expected
    assert 300 < sum(flags) < 600 and batched.size == len(texts) - sum(flags)
    assert batched._bits > 12  # the bucket table grew several times on the way


def test_cap_forgets_rows_past_the_commit_count() -> None:
    dedup = Deduplicator(near_threshold=0.8, num_perm=128, shingle_size=3, seed=0)
    rng = random.Random(3)
    base = " ".join(sentence(rng, 60))
    keys = dedup.keyer.keys([base, "autre texte sans rapport aucun " * 3])
    reasons = dedup.decide("instruction", keys)
    assert reasons == [None, None]
    dedup.commit("instruction", keys, reasons, 1)  # the second row is past the source's cap
    again = dedup.keyer.keys(["autre texte sans rapport aucun " * 3, base])
    assert dedup.decide("instruction", again) == [None, "duplicate_exact"]


def test_near_duplicate_decisions_agree_with_datasketch() -> None:
    """Same decision on >= 99.9 % of texts. Copies are ~0.96 similar: at ~0.91, datasketch's
    banding (equal weights on false positives and negatives) misses ~4 % of the pairs that this
    index, tuned for recall and confirming every candidate, finds."""
    datasketch = pytest.importorskip("datasketch")
    texts = corpus_with_near_duplicates(1500, seed=5, length=(120, 160))
    dedup = Deduplicator(near_threshold=0.8, num_perm=128, shingle_size=3, seed=0)
    ours = []
    for start in range(0, len(texts), 512):
        batch = [" ".join(tokens) for tokens in texts[start : start + 512]]
        ours += [reason == "duplicate_near" for reason in dedup.check_batch("retrieval", batch)]
    lsh = datasketch.MinHashLSH(threshold=0.8, num_perm=128)
    theirs = []
    for position, tokens in enumerate(texts):
        shingles = [" ".join(tokens[i : i + 3]).encode("utf-8") for i in range(len(tokens) - 2)]
        signature = datasketch.MinHash(num_perm=128, seed=1)
        signature.update_batch(shingles)
        if lsh.query(signature):
            theirs.append(True)
            continue
        lsh.insert(str(position), signature)
        theirs.append(False)
    agree = sum(a == b for a, b in zip(ours, theirs, strict=True)) / len(texts)
    assert sum(theirs) > 180  # the corpus has near duplicates to find
    assert agree >= 0.999, (agree, sum(ours), sum(theirs))


def test_the_near_switch_is_the_deduplicators_and_mismatched_keys_are_refused() -> None:
    """Keys come from worker processes (``parallel.BatchCleaner``), not from the Deduplicator's
    own keyer: with near dedup off, near keys must not bring it back, and with it on, keys made
    without their near part must fail loudly instead of skipping near dedup."""
    words = sentence(random.Random(6), 80)
    text = " ".join(words)
    edited = " ".join([*words[:40], "changé", *words[41:]])  # one word in 80
    near_on = Deduplicator(near_threshold=0.8, num_perm=128, shingle_size=3, seed=0)
    near_off = Deduplicator(near_threshold=0.8, num_perm=128, shingle_size=3, seed=0, near=False)
    assert near_on.check_batch("reasoning", [text, edited]) == [None, "duplicate_near"]
    with_near_part = near_on.keyer.keys([text, edited])
    assert near_off.decide("reasoning", with_near_part) == [None, None], (
        "near dedup ran although the Deduplicator has it off"
    )
    without_near_part = near_off.keyer.keys([text])
    with pytest.raises(ValueError, match="near=False"):
        near_on.decide("reasoning", without_near_part)
    with pytest.raises(ValueError, match="near=False"):
        near_on.commit("reasoning", without_near_part, [None], 1)
