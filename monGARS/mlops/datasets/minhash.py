"""Near-duplicate detection: MinHash signatures (rensa, batched) and banded LSH.

Shingles are word n-grams. Words are hashed to 64 bits by rensa (one call per batch) and n-gram
hashes are combined with vectorised integer arithmetic for the whole batch at once; the
``num_perm`` MinHash values of every record then come from rensa's R-MinHash (Rust), again one
call per batch (``RMinHash.digest_matrix_from_flat_token_hashes``). rensa replaced this module's
numpy multiply-add-shift MinHash after ``bench/bench_datasets.py`` measured it faster on the same
shingles (docs/datasets.md, Benchmark).

The LSH index (``LshIndex``) is this module's own: compact numpy tables, and every candidate
confirmed by comparing stored 16-bit signatures (b-bit minwise hashing), so a bucket collision
alone never removes a record. Everything is seeded: same input, same result.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain

import numpy as np
import rensa

_MASK32 = np.uint64(0xFFFFFFFF)


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
        self.rensa_seed = int(rng.integers(0, 2**63))
        self._mix = rng.integers(1, 2**63, size=shingle_size, dtype=np.uint64) | np.uint64(1)

    def shingle_batch(self, token_lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """64-bit hashes of every record's word n-grams, and the number of shingles per record.

        The whole batch is one array: n-gram hashes are combined for every position at once and
        the positions whose n-gram would cross into the next record are masked out. A record
        shorter than n words is one shingle of all its words; an empty record, one empty word.
        """
        lists = [tokens if tokens else ("",) for tokens in token_lists]
        lengths = np.fromiter((len(tokens) for tokens in lists), dtype=np.int64, count=len(lists))
        # Every word hashed to 64 bits by rensa (Rust), the whole batch in one call.
        ids = np.fromiter(
            chain.from_iterable(rensa.RMinHash.hash_token_sets(lists)),
            dtype=np.uint64,
            count=int(lengths.sum()),
        )
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
        hashed *= np.uint64(0xBF58476D1CE4E5B9)
        hashed ^= hashed >> np.uint64(32)
        counts = np.maximum(lengths - k + 1, 1)
        return hashed, counts

    def signatures(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """MinHash signature rows for a batch of token lists."""
        if not token_lists:
            return np.empty((0, self.num_perm), dtype=np.uint32)
        shingles, counts = self.shingle_batch(token_lists)
        offsets = np.zeros(len(counts) + 1, dtype=np.uint64)
        np.cumsum(counts, out=offsets[1:])
        matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
            shingles, offsets, self.num_perm, self.rensa_seed
        )
        # rensa hands rows back as lists: array.array reads them in C faster than np.array.
        flat = array("I", chain.from_iterable(matrix.to_rows()))
        return np.frombuffer(flat, dtype=np.uint32).reshape(len(counts), self.num_perm)


class LshBands:
    """The banding of MinHash signatures: per-band bucket tags and stored short signatures.

    Pure functions of the signatures (seeded), so worker processes compute them and only the
    index lookups stay in the process that owns the index. A band's ``rows`` values are mixed
    into one 64-bit hash with the band number, then folded to a non-zero 32-bit tag: two bands
    never share a bucket by construction, and a rare tag collision only adds a candidate that
    the confirmation step rejects.
    """

    def __init__(self, threshold: float, num_perm: int, seed: int = 0) -> None:
        self.threshold = threshold
        self.num_perm = num_perm
        self.bands, self.rows = optimal_bands(threshold, num_perm)
        rng = np.random.default_rng([seed, 0x6C7368])
        self._band_mix = rng.integers(1, 2**63, size=self.rows, dtype=np.uint64) | np.uint64(1)
        self._band_salt = rng.integers(1, 2**63, size=self.bands, dtype=np.uint64)

    @property
    def used(self) -> int:
        """Signature columns the bands use (``bands * rows`` <= ``num_perm``)."""
        return self.bands * self.rows

    def tags(self, signatures: np.ndarray) -> np.ndarray:
        """Non-zero uint32 bucket tags, shape ``(n, bands)``."""
        used = signatures[:, : self.used].astype(np.uint64)
        bands = used.reshape(len(signatures), self.bands, self.rows)
        keys = (bands * self._band_mix[None, None, :]).sum(axis=2, dtype=np.uint64)
        keys += self._band_salt[None, :]
        keys ^= keys >> np.uint64(31)
        keys *= np.uint64(0x9E3779B97F4A7C15)
        keys ^= keys >> np.uint64(32)
        return (keys & _MASK32).astype(np.uint32) | np.uint32(1)

    def short(self, signatures: np.ndarray) -> np.ndarray:
        """The low 16 bits of the banded columns: what candidates are confirmed against."""
        return (signatures[:, : self.used] & 0xFFFF).astype(np.uint16)


class LshIndex:
    """Banded LSH over MinHash signatures with candidate confirmation; keeps the first seen.

    Memory is a few flat numpy arrays, so millions of records fit: one open-addressing table
    (linear probing, load <= 0.7) from bucket tag to the newest entry in that bucket, a chain
    array linking each (record, band) entry to the previous one in its bucket, and the stored
    16-bit signatures (``bands * rows * 2`` bytes per record). About 0.6 KB per indexed record
    with the default 12 bands x 10 rows.

    A candidate (a record sharing at least one band bucket) is a duplicate only when the share
    of equal stored 16-bit values reaches ``threshold``, so a bucket collision alone never
    removes a record.
    """

    def __init__(self, threshold: float, num_perm: int, seed: int = 0) -> None:
        self.banding = LshBands(threshold, num_perm, seed)
        self.threshold = threshold
        self.bands, self.rows = self.banding.bands, self.banding.rows
        self._bits = 10
        self._tags = np.zeros(1 << self._bits, dtype=np.uint32)
        self._heads = np.zeros(1 << self._bits, dtype=np.int32)
        self._occupied = 0
        self._next = np.empty(1024 * self.bands, dtype=np.int32)  # per entry; -1 ends a chain
        self._stored = np.empty((1024, self.banding.used), dtype=np.uint16)
        self.size = 0

    # -- the bucket table ---------------------------------------------------------------------

    def _slots(self, tags: np.ndarray, bits: int) -> np.ndarray:
        mixed = (tags.astype(np.uint64) * np.uint64(0x9E3779B1)) & _MASK32
        return (mixed >> np.uint64(32 - bits)).astype(np.int64)

    def _find(self, tags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slot, found) per tag: its slot, or the empty slot where it would go."""
        mask = (1 << self._bits) - 1
        slots = self._slots(tags, self._bits)
        found = np.zeros(len(tags), dtype=bool)
        todo = np.arange(len(tags))
        while todo.size:
            probe = slots[todo]
            stored = self._tags[probe]
            hit = stored == tags[todo]
            found[todo[hit]] = True
            todo = todo[~hit & (stored != 0)]
            slots[todo] = (slots[todo] + 1) & mask
        return slots, found

    def _claim(self, tags: np.ndarray, heads: np.ndarray) -> None:
        """Put distinct tags, absent from the table, into empty slots with their head entries."""
        mask = (1 << self._bits) - 1
        slots = self._slots(tags, self._bits)
        todo = np.arange(len(tags))
        while todo.size:
            probe = slots[todo]
            empty = self._tags[probe] == 0
            # Several tags may reach the same empty slot: one write wins (tags are distinct, so
            # reading the slot back tells which), the others go on probing.
            candidates, reached = todo[empty], probe[empty]
            self._tags[reached] = tags[candidates]
            won = self._tags[reached] == tags[candidates]
            self._heads[reached[won]] = heads[candidates[won]]
            moving = np.ones(len(todo), dtype=bool)
            moving[np.flatnonzero(empty)[won]] = False
            todo = todo[moving]
            busy = self._tags[slots[todo]] != 0
            slots[todo[busy]] = (slots[todo[busy]] + 1) & mask
        self._occupied += len(tags)

    def _grow(self, extra: int) -> None:
        # The table doubles past a load of 0.7 (rehashing needs the old and the new table at
        # once, so a lower bound costs twice the memory at the moment it matters most).
        while 10 * (self._occupied + extra) > 7 * (1 << self._bits):
            live = np.flatnonzero(self._tags)
            tags, heads = self._tags[live], self._heads[live]
            self._bits += 1
            self._tags = np.zeros(1 << self._bits, dtype=np.uint32)
            self._heads = np.zeros(1 << self._bits, dtype=np.int32)
            self._occupied = 0
            self._claim(tags, heads)
        needed = self.size + extra // self.bands
        if needed > len(self._stored):
            # Grown in place (realloc: large blocks are remapped, not copied) by a quarter, so
            # the stored rows never exist twice and at most a quarter of them is spare.
            capacity = max(needed, len(self._stored) + len(self._stored) // 4)
            self._stored.resize((capacity, self._stored.shape[1]), refcheck=False)
            self._next.resize(capacity * self.bands, refcheck=False)

    # -- queries and inserts ------------------------------------------------------------------

    def _similar(self, stored: np.ndarray, short: np.ndarray) -> np.ndarray:
        """Whether each pair of 16-bit rows agrees on at least ``threshold`` of the values."""
        return (stored == short).mean(axis=1) >= self.threshold

    def query(self, tags: np.ndarray, short: np.ndarray) -> np.ndarray:
        """Near-duplicate flags for rows given in order, without changing the index.

        A row is flagged when it is similar to an indexed record, or to an earlier row of the
        same call that is not itself flagged: exactly what inserting the rows one by one, and
        dropping the flagged ones, would decide.
        """
        count = len(tags)
        flags = np.zeros(count, dtype=bool)
        if not count:
            return flags
        flat = tags.reshape(-1)
        slots, found = self._find(flat)
        # Candidates already in the index: walk each bucket's chain.
        rows = np.flatnonzero(found) // self.bands
        entries = self._heads[slots[found]]
        pairs_rows, pairs_records = [], []
        while len(entries):
            pairs_rows.append(rows)
            pairs_records.append(entries // self.bands)
            entries = self._next[entries]
            live = entries >= 0
            rows, entries = rows[live], entries[live]
        if pairs_rows:
            joined = np.unique(
                np.concatenate(pairs_rows).astype(np.int64) * (1 << 32)
                + np.concatenate(pairs_records)
            )
            cand_rows, cand_records = joined >> 32, joined & 0xFFFFFFFF
            similar = self._similar(self._stored[cand_records], short[cand_rows])
            flags[cand_rows[similar]] = True
        if count > 1:
            self._within(flat, short, flags)
        return flags

    def _within(self, flat: np.ndarray, short: np.ndarray, flags: np.ndarray) -> None:
        """Flag rows similar to an earlier unflagged row of the same call, in order."""
        order = np.argsort(flat, kind="stable")
        ordered = flat[order]
        boundaries = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1], True])
        earlier: dict[int, set[int]] = {}
        for run in np.flatnonzero(np.diff(boundaries) >= 2).tolist():
            start, end = int(boundaries[run]), int(boundaries[run + 1])
            rows = sorted({int(entry) // self.bands for entry in order[start:end]})
            for position, later in enumerate(rows[1:], start=1):
                earlier.setdefault(later, set()).update(rows[:position])
        for row in sorted(earlier):
            if flags[row]:
                continue
            others = [other for other in sorted(earlier[row]) if not flags[other]]
            if others and self._similar(short[others], short[row][None, :]).any():
                flags[row] = True

    def insert(self, tags: np.ndarray, short: np.ndarray) -> None:
        """Append rows to the index (the caller has decided that they are kept)."""
        count = len(tags)
        if not count:
            return
        if (self.size + count) * self.bands >= 2**31:
            raise ValueError("LshIndex: more than 2**31 / bands records in one index")
        self._grow(count * self.bands)
        first_record = self.size
        self._stored[first_record : first_record + count] = short
        self.size += count
        flat = tags.reshape(-1)
        entries = first_record * self.bands + np.arange(len(flat), dtype=np.int64)
        # Entries sharing a tag form one chain, oldest last; the newest becomes the head.
        order = np.argsort(flat, kind="stable")
        ordered_tags, ordered_entries = flat[order], entries[order]
        starts = np.flatnonzero(np.r_[True, ordered_tags[1:] != ordered_tags[:-1]])
        ends = np.r_[starts[1:], len(order)] - 1
        self._next[ordered_entries[1:]] = ordered_entries[:-1]
        unique_tags = ordered_tags[starts]
        oldest, newest = ordered_entries[starts], ordered_entries[ends]
        slots, found = self._find(unique_tags)
        self._next[oldest[found]] = self._heads[slots[found]]
        self._heads[slots[found]] = newest[found]
        self._next[oldest[~found]] = -1
        if (~found).any():
            self._claim(unique_tags[~found], newest[~found])

    def add_batch(self, signatures: np.ndarray) -> list[bool]:
        """Insert signatures in order; True where one near-duplicates an earlier one (not added)."""
        tags, short = self.banding.tags(signatures), self.banding.short(signatures)
        flags = self.query(tags, short)
        self.insert(tags[~flags], short[~flags])
        return flags.tolist()
