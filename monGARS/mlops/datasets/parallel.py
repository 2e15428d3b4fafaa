"""Cleaning and dedup keys on every CPU, in ordered batches, with the same bytes out.

The per-record work of build_datasets (normalise, schema, length, spam, PII, language, then the
JSONL line, split score and duplicate keys of the records that pass) has no state shared between
records, so it runs in worker processes on batches of candidates. Results come back in submission
order; the one process that owns the dedup indexes and the writers then decides, record by
record in source order, exactly as a single process would: first seen wins whatever the number
of workers, and the output files are the same bytes.

Memory stays bounded: at most ``2 x workers`` batches are in flight, candidates stream from the
reader, and nothing holds more than a batch of records.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, TypeVar

from monGARS.mlops.datasets.cleaning import CleaningRules, clean_batch
from monGARS.mlops.datasets.dedup import DedupKeyer, DedupKeys
from monGARS.mlops.datasets.records import content_text
from monGARS.mlops.datasets.split import dumps, split_score
from monGARS.mlops.errors import MongarsError

Tag = TypeVar("Tag")


@dataclass(frozen=True)
class WorkPlan:
    """Everything a worker needs, fixed for a whole build (sent once to each worker)."""

    rules: CleaningRules
    seed: int
    near: bool
    near_threshold: float
    num_perm: int
    shingle_size: int


@dataclass
class CleanedBatch:
    """One batch of candidates after cleaning: a reason per candidate, and the passed records.

    ``reasons[i]`` is the drop reason of candidate ``i`` or ``None`` when it passed; the other
    lists hold one entry per passed candidate, in order.
    """

    reasons: list[str | None] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # the JSONL line written for the record
    ids: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # split score (``split.split_score``)
    redacted: list[dict[str, int]] = field(default_factory=list)
    notes: list[dict[str, int]] = field(default_factory=list)  # rules that let it through
    keys: DedupKeys | None = None


class BatchCleaner:
    """Runs one batch in the current process (a worker's, or the main one with one worker)."""

    def __init__(self, plan: WorkPlan) -> None:
        self.plan = plan
        self.keyer = DedupKeyer(
            near_threshold=plan.near_threshold,
            num_perm=plan.num_perm,
            shingle_size=plan.shingle_size,
            seed=plan.seed,
            near=plan.near,
        )

    def run(self, kind: str, candidates: list[dict[str, Any]]) -> CleanedBatch:
        out = CleanedBatch()
        texts = []
        for cleaned in clean_batch(kind, candidates, self.plan.rules):
            record = cleaned.record
            if record is None:
                out.reasons.append(cleaned.reason or "invalid_fields")
                continue
            out.reasons.append(None)
            out.lines.append(dumps(record))
            out.ids.append(record["id"])
            out.scores.append(split_score(record["id"], self.plan.seed))
            out.redacted.append(dict(cleaned.redacted))
            out.notes.append(dict(cleaned.notes))
            texts.append(content_text(kind, record))
        out.keys = self.keyer.keys(texts)
        return out


_WORKER: BatchCleaner | None = None


def _start_worker(plan: WorkPlan) -> None:
    global _WORKER
    _WORKER = BatchCleaner(plan)


def _run_in_worker(kind: str, candidates: list[dict[str, Any]]) -> CleanedBatch:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.run(kind, candidates)


def _context() -> multiprocessing.context.BaseContext:
    """forkserver where available: workers fork from a clean server process, never from a
    parent that holds threads (tqdm, gcsfs, the hub client), and start fast after the first."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def _exit_status(code: int) -> str:
    """``exit code 3`` or ``signal SIGTERM`` (a number when the signal has no name here)."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


class BatchRunner:
    """Ordered map of ``BatchCleaner.run`` over batches, on ``workers`` processes.

    With one worker, or a source that fits in one batch, everything runs in this process and
    no pool is started. The pool, once started, serves every later source of the build.
    """

    def __init__(self, plan: WorkPlan, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1 (got {workers})")
        self.workers = workers
        self._local = BatchCleaner(plan)
        self._plan = plan
        self._pool: ProcessPoolExecutor | None = None
        self.pool_used = False

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=_context(),
                initializer=_start_worker,
                initargs=(self._plan,),
            )
            self.pool_used = True
        return self._pool

    def map(
        self, kind: str, batches: Iterable[tuple[list[dict[str, Any]], Tag]]
    ) -> Iterator[tuple[CleanedBatch, Tag]]:
        """``(cleaned batch, tag)`` for each ``(candidates, tag)``, in order, read lazily."""
        iterator = iter(batches)
        head = [item for item in (next(iterator, None), next(iterator, None)) if item is not None]
        if self.workers == 1 or len(head) < 2:
            for candidates, tag in (*head, *iterator):
                yield self._local.run(kind, candidates), tag
            return
        pool = self._executor()
        pending: deque[tuple[Future[CleanedBatch], Tag]] = deque()

        def submit(item: tuple[list[dict[str, Any]], Tag]) -> None:
            pending.append((pool.submit(_run_in_worker, kind, item[0]), item[1]))

        for item in head:
            submit(item)
        exhausted = False
        try:
            while pending:
                while not exhausted and len(pending) < 2 * self.workers:
                    item = next(iterator, None)
                    if item is None:
                        exhausted = True
                    else:
                        submit(item)
                future, tag = pending.popleft()
                try:
                    result = future.result()
                except BrokenProcessPool as error:
                    raise MongarsError(f"workers: {self._death_cause()}") from error
                yield result, tag
        finally:
            for future, _ in pending:
                future.cancel()

    def _death_cause(self) -> str:
        """Why the pool broke, from its processes' exit codes, as an actionable sentence."""
        processes = list(self._pool._processes.values()) if self._pool is not None else []
        codes = [process.exitcode for process in processes if process.exitcode is not None]
        if -signal.SIGKILL in codes:
            return (
                "a cleaning worker process was killed (SIGKILL), most likely by the kernel's "
                "out-of-memory killer: lower workers or raise the task's memory limit"
            )
        ended = ", ".join(_exit_status(code) for code in codes if code != 0)
        return (
            f"a cleaning worker process ended early ({ended or 'no exit code'}); its own error, "
            "if it printed one, is in the log above"
        )

    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (none before a pool starts), for monitoring."""
        if self._pool is None:
            return []
        return sorted(process.pid for process in self._pool._processes.values() if process.pid)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
