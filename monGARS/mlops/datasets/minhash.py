"""Near-duplicate detection: MinHash signatures (numpy, batched) and banded LSH.

Shingles are word n-grams. Each word is hashed once (blake2b, cached), n-gram hashes are combined
with vectorised integer arithmetic, and each of the ``num_perm`` hash functions is a
multiply-add-shift hash ``(a*x + b) >> 32`` over 32-bit keys (a strongly universal family), so
one batch of records becomes one (shingles x permutations) matrix and a ``minimum.reduceat``.

The LSH index keeps, per band, a dict from the band's 64-bit key to the records in that bucket,
and confirms every candidate by comparing stored 16-bit signatures (b-bit minwise hashing), so a
bucket collision alone never removes a record. Everything is seeded: same input, same result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
# Cap on one (permutations x shingles) block of uint64: 2 MB, reused across blocks.
_BLOCK_ELEMENTS = 1 << 18


# Candidates are confirmed against stored signatures, so a false positive costs one comparison
# while a false negative lets a duplicate through: the band layout favours recall.
FALSE_POSITIVE_WEIGHT = 0.2
FALSE_NEGATIVE_WEIGHT = 0.8


@lru_cache(maxsize=32)
def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm minimising weighted false positives + negatives.

    A pair with Jaccard s becomes a candidate with probability 1 - (1 - s**r)**b; the integral of
    that below ``threshold`` (false positives) and of its complement above (false negatives) are
    weighted and minimised over all (b, r). With 128 permutations and a 0.8 threshold this gives
    12 bands of 10 rows: 99% of pairs at 0.9 similarity become candidates, 1% of pairs at 0.5.
    """
    best: tuple[float, int, int] | None = None
    below = np.linspace(0.0, threshold, 201)
    above = np.linspace(threshold, 1.0, 201)
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_pos = np.trapezoid(1 - (1 - below**rows) ** bands, below)
            false_neg = np.trapezoid((1 - above**rows) ** bands, above)
            error = float(FALSE_POSITIVE_WEIGHT * false_pos + FALSE_NEGATIVE_WEIGHT * false_neg)
            if best is None or error < best[0] - 1e-12:
                best = (error, bands, rows)
    assert best is not None
    return best[1], best[2]


class MinHasher:
    """Batched MinHash signatures of token lists (uint32, shape ``(n, num_perm)``)."""

    def __init__(self, num_perm: int = 128, shingle_size: int = 3, seed: int = 0) -> None:
        rng = np.random.default_rng([seed, 0x6D696E68])
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self._a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
        self._b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
        self._mix = rng.integers(1, 2**63, size=shingle_size, dtype=np.uint64) | np.uint64(1)
        self._token_hashes: dict[str, int] = {}

    def _token_ids(self, tokens: Sequence[str]) -> np.ndarray:
        cache = self._token_hashes
        values = [cache.get(token) for token in tokens]
        for position, value in enumerate(values):
            if value is None:
                token = tokens[position]
                digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
                values[position] = int.from_bytes(digest, "little")
                if len(cache) < 2_000_000:  # bounded: a pathological vocabulary stops caching
                    cache[token] = values[position]
        return np.array(values, dtype=np.uint64)

    def shingle_batch(self, token_lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """32-bit hashes of every record's word n-grams, and the number of shingles per record.

        The whole batch is one array: n-gram hashes are combined for every position at once and
        the positions whose n-gram would cross into the next record are masked out. A record
        shorter than n words is one shingle of all its words; an empty record, one empty word.
        """
        lists = [tokens if tokens else ("",) for tokens in token_lists]
        lengths = np.fromiter((len(tokens) for tokens in lists), dtype=np.int64, count=len(lists))
        ids = self._token_ids([token for tokens in lists for token in tokens])
        k = self.shingle_size
        combined = np.zeros(len(ids), dtype=np.uint64)
        for offset in range(k):
            combined[: len(ids) - offset] += ids[offset:] * self._mix[offset]
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        position = np.arange(len(ids)) - np.repeat(starts, lengths)
        per_token_length = np.repeat(lengths, lengths)
        valid = position <= per_token_length - k
        for record in np.flatnonzero(lengths < k):  # short records: one shingle of all words
            first, count = starts[record], lengths[record]
            combined[first] = (ids[first : first + count] * self._mix[:count]).sum(dtype=np.uint64)
            valid[first] = True
        hashed = combined[valid]
        hashed ^= hashed >> np.uint64(29)
        hashed = (hashed ^ (hashed >> _SHIFT32)) & _MASK32
        counts = np.maximum(lengths - k + 1, 1)
        return hashed, counts

    def signatures(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """MinHash signature rows for a batch of token lists."""
        out = np.empty((len(token_lists), self.num_perm), dtype=np.uint32)
        if not token_lists:
            return out
        shingles, counts = self.shingle_batch(token_lists)
        ends = np.cumsum(counts)
        buffer = np.empty(
            max(_BLOCK_ELEMENTS // self.num_perm, int(counts.max())) * self.num_perm,
            dtype=np.uint64,
        )
        rows_per_block = len(buffer) // self.num_perm
        first = 0
        while first < len(counts):
            done = ends[first - 1] if first else 0
            # As many whole records as fit in one block of shingles x permutations.
            last = int(np.searchsorted(ends, done + rows_per_block, side="right"))
            last = max(last, first + 1)
            block = shingles[done : ends[last - 1]]
            # (permutations, shingles) layout: reduceat along the contiguous axis is ~20x faster
            # than along rows.
            hashed = buffer[: len(block) * self.num_perm].reshape(self.num_perm, len(block))
            np.multiply(self._a[:, None], block[None, :], out=hashed)
            np.add(hashed, self._b[:, None], out=hashed)
            np.right_shift(hashed, _SHIFT32, out=hashed)
            offsets = np.concatenate(([0], np.cumsum(counts[first:last])[:-1]))
            out[first:last] = np.minimum.reduceat(hashed, offsets, axis=1).T
            first = last
        return out


class LshIndex:
    """Banded LSH over MinHash signatures with candidate confirmation; keeps the first seen."""

    def __init__(self, threshold: float, num_perm: int, seed: int = 0) -> None:
        self.threshold = threshold
        self.bands, self.rows = optimal_bands(threshold, num_perm)
        rng = np.random.default_rng([seed, 0x6C7368])
        self._band_mix = rng.integers(1, 2**63, size=self.rows, dtype=np.uint64) | np.uint64(1)
        self._tables: list[dict[int, int | list[int]]] = [{} for _ in range(self.bands)]
        self._stored = np.empty((1024, self.bands * self.rows), dtype=np.uint16)
        self.size = 0

    def _band_keys(self, signatures: np.ndarray) -> np.ndarray:
        used = signatures[:, : self.bands * self.rows].astype(np.uint64)
        bands = used.reshape(len(signatures), self.bands, self.rows)
        keys = (bands * self._band_mix[None, None, :]).sum(axis=2, dtype=np.uint64)
        return keys ^ (keys >> np.uint64(31))

    def _store(self, row: np.ndarray) -> int:
        if self.size == len(self._stored):
            grown = np.empty((2 * len(self._stored), self._stored.shape[1]), dtype=np.uint16)
            grown[: self.size] = self._stored[: self.size]
            self._stored = grown
        self._stored[self.size] = row
        self.size += 1
        return self.size - 1

    def add_batch(self, signatures: np.ndarray) -> list[bool]:
        """Insert signatures in order; True where one near-duplicates an earlier one (not added)."""
        keys = self._band_keys(signatures).tolist()
        short = (signatures[:, : self.bands * self.rows] & 0xFFFF).astype(np.uint16)
        duplicates: list[bool] = []
        for index, band_keys in enumerate(keys):
            candidates: set[int] = set()
            for table, key in zip(self._tables, band_keys, strict=True):
                found = table.get(key)
                if found is not None:
                    candidates.update(found if isinstance(found, list) else (found,))
            row = short[index]
            if candidates:
                ids = np.fromiter(sorted(candidates), dtype=np.int64, count=len(candidates))
                similarity = (self._stored[ids] == row[None, :]).mean(axis=1)
                if float(similarity.max()) >= self.threshold:
                    duplicates.append(True)
                    continue
            new_id = self._store(row)
            for table, key in zip(self._tables, band_keys, strict=True):
                found = table.get(key)
                if found is None:
                    table[key] = new_id
                elif isinstance(found, list):
                    found.append(new_id)
                else:
                    table[key] = [found, new_id]
            duplicates.append(False)
        return duplicates
