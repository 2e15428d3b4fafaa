"""Exact and near-duplicate removal across sources, one index per record kind.

Exact duplicates are found on a normalised form of the text (case, punctuation and spacing
ignored); near duplicates with MinHash LSH over word n-grams. The first record seen wins, and the
order is the configured source order, so the result is deterministic. Kinds are indexed apart: a
retrieval query that repeats an instruction is not a duplicate of it.

The work is split in two so that it parallelises without changing a decision: ``DedupKeyer``
turns texts into keys (exact digest, MinHash band tags, short signatures), a pure function that
worker processes run on their batches; ``Deduplicator`` owns the indexes and decides, in source
order, in the one process that writes the output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from monGARS.mlops.datasets.minhash import LshBands, LshIndex, MinHasher
from monGARS.mlops.datasets.normalize import dedup_words


class NearKeys(NamedTuple):
    """The near-duplicate side of a batch's keys, row for row."""

    tags: np.ndarray  # (n, bands) uint32 LSH bucket tags
    short: np.ndarray  # (n, bands * rows) uint16 stored signatures


@dataclass
class DedupKeys:
    """What duplicate removal needs of a batch of texts, row for row."""

    digests: list[bytes]  # blake2b-128 of the normalised text
    near: NearKeys | None  # None when the keyer had near dedup off

    def __len__(self) -> int:
        return len(self.digests)

    def near_rows(self, rows: np.ndarray) -> NearKeys:
        """The near-duplicate keys of ``rows``; refuses keys made without them, so a
        near-dedup index is never silently skipped."""
        if self.near is None:
            raise ValueError("near dedup is on but these keys were made with near=False")
        return NearKeys(self.near.tags[rows], self.near.short[rows])


class DedupKeyer:
    """Texts -> ``DedupKeys``; stateless apart from a word-hash cache, so any process can run it."""

    def __init__(
        self, *, near_threshold: float, num_perm: int, shingle_size: int, seed: int, near: bool
    ) -> None:
        self.near = near
        self.hasher = MinHasher(num_perm=num_perm, shingle_size=shingle_size, seed=seed)
        self.banding = LshBands(near_threshold, num_perm, seed)

    def keys(self, texts: Sequence[str]) -> DedupKeys:
        tokens = [dedup_words(text) for text in texts]
        digests = [
            hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=16).digest()
            for words in tokens
        ]
        if not self.near:
            return DedupKeys(digests, None)
        signatures = self.hasher.signatures(tokens)
        near = NearKeys(self.banding.tags(signatures), self.banding.short(signatures))
        return DedupKeys(digests, near)


class Deduplicator:
    """Stateful duplicate filter: batches of texts (or their keys) per kind, in a fixed order."""

    def __init__(
        self,
        *,
        near_threshold: float,
        num_perm: int,
        shingle_size: int,
        seed: int,
        near: bool = True,
    ) -> None:
        self._near = near
        self._threshold = near_threshold
        self._num_perm = num_perm
        self._seed = seed
        self.keyer = DedupKeyer(
            near_threshold=near_threshold,
            num_perm=num_perm,
            shingle_size=shingle_size,
            seed=seed,
            near=near,
        )
        self._exact: dict[str, set[bytes]] = {}
        self._lsh: dict[str, LshIndex] = {}
        self.removed = {"duplicate_exact": 0, "duplicate_near": 0}

    def _index(self, kind: str) -> LshIndex:
        index = self._lsh.get(kind)
        if index is None:
            index = self._lsh[kind] = LshIndex(self._threshold, self._num_perm, self._seed)
        return index

    def decide(self, kind: str, keys: DedupKeys) -> list[str | None]:
        """Each row's drop reason (``duplicate_exact``/``duplicate_near``) or ``None``.

        Rows are judged in order against the index and the earlier rows of the batch, as if each
        were inserted in turn; nothing is stored until ``commit``.
        """
        seen = self._exact.get(kind, set())
        batch: set[bytes] = set()
        reasons: list[str | None] = []
        fresh: list[int] = []
        for position, digest in enumerate(keys.digests):
            if digest in seen or digest in batch:
                reasons.append("duplicate_exact")
                continue
            batch.add(digest)
            reasons.append(None)
            fresh.append(position)
        if self._near:
            rows = np.asarray(fresh, dtype=np.int64)
            flags = self._index(kind).query(*keys.near_rows(rows))
            for position in rows[flags].tolist():
                reasons[position] = "duplicate_near"
        return reasons

    def commit(self, kind: str, keys: DedupKeys, reasons: Sequence[str | None], count: int) -> None:
        """Store the first ``count`` rows as ``decide`` judged them (later rows are forgotten)."""
        seen = self._exact.setdefault(kind, set())
        kept: list[int] = []
        for position in range(count):
            reason = reasons[position]
            if reason == "duplicate_exact":
                self.removed[reason] += 1
                continue
            seen.add(keys.digests[position])
            if reason is None:
                kept.append(position)
            else:
                self.removed[reason] += 1
        if self._near:
            self._index(kind).insert(*keys.near_rows(np.asarray(kept, dtype=np.int64)))

    def check_batch(self, kind: str, texts: Sequence[str]) -> list[str | None]:
        """The drop reason of each text (``duplicate_exact``/``duplicate_near``) or ``None``."""
        keys = self.keyer.keys(texts)
        reasons = self.decide(kind, keys)
        self.commit(kind, keys, reasons, len(reasons))
        return reasons
