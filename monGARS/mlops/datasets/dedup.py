"""Exact and near-duplicate removal across sources, one index per record kind.

Exact duplicates are found on a normalised form of the text (case, punctuation and spacing
ignored); near duplicates with MinHash LSH over word n-grams. The first record seen wins, and the
order is the configured source order, so the result is deterministic. Kinds are indexed apart: a
retrieval query that repeats an instruction is not a duplicate of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from monGARS.mlops.datasets.minhash import LshIndex, MinHasher
from monGARS.mlops.datasets.normalize import dedup_key


class Deduplicator:
    """Stateful duplicate filter: feed batches of texts per kind, in a fixed order."""

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
        self._hasher = MinHasher(num_perm=num_perm, shingle_size=shingle_size, seed=seed)
        self._exact: dict[str, set[bytes]] = {}
        self._lsh: dict[str, LshIndex] = {}
        self.removed = {"duplicate_exact": 0, "duplicate_near": 0}

    def check_batch(self, kind: str, texts: Sequence[str]) -> list[str | None]:
        """The drop reason of each text (``duplicate_exact``/``duplicate_near``) or ``None``."""
        seen = self._exact.setdefault(kind, set())
        reasons: list[str | None] = []
        fresh_keys: list[str] = []
        fresh_positions: list[int] = []
        for position, text in enumerate(texts):
            key = dedup_key(text)
            digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
            if digest in seen:
                reasons.append("duplicate_exact")
                continue
            seen.add(digest)
            reasons.append(None)
            fresh_keys.append(key)
            fresh_positions.append(position)
        if self._near and fresh_keys:
            index = self._lsh.get(kind)
            if index is None:
                index = self._lsh[kind] = LshIndex(self._threshold, self._num_perm, self._seed)
            signatures = self._hasher.signatures([key.split() for key in fresh_keys])
            for position, is_dup in zip(fresh_positions, index.add_batch(signatures), strict=True):
                if is_dup:
                    reasons[position] = "duplicate_near"
        for reason in reasons:
            if reason is not None:
                self.removed[reason] += 1
        return reasons
