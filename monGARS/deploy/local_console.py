"""What a local run shows on the console, and the full task logs it keeps on disk.

``kfp.local`` prints every task's executor JSON and streamed output (stdout) and a warning per
task (stderr): about 145 KB for the tiny pipeline. :class:`RunConsole` takes all of it while the
pipeline runs and turns it into

- one line per task as it starts and one as it ends: stage, module, status, seconds and the
  task's key figure (losses, retrieval before/after, GGUF files...);
- on a terminal, a live progress line for the tasks running: a bar from the "step N/M" lines the
  training loops log (sft, raft, each llm2vec phase), elapsed time otherwise;
- each distinct library warning once (the rest are in the logs);
- the full logs under ``runs/<run-id>/logs/<attempt>/``: one file per task
  (``NN-<stage>[-<module>].log``) and ``run.log`` with everything, interleaved as it came;
- for a failed task, its last lines and the path of its full log.

How it hooks in (kfp 2.17.3, read from ``kfp/local``): task output reaches ``sys.stdout`` through
``print`` from the thread running the task (the SubprocessRunner's reader loop), and kfp's own
log lines go to a handler bound to ``sys.stdout`` inside each task; stdout is redirected to a
router that files each write under the task its thread is running. Task boundaries come from a
thin wrapper around ``task_executor.execute_single_task`` (the task name, its ``module`` argument,
its outputs and status), and cache hits from kfp's "cache hit" log record. ParallelFor iterations
run on two threads, so everything is keyed by thread.

Stage and module are derived from task names generically: ``merge-adapter-2`` is stage
``merge_adapter``; the module is the task's ``module`` argument (or its outputs' ``module``
metadata), so renamed or new tasks need no change here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

HOOKED_KFP_VERSION = "2.17.3"
TAIL_LINES = 25
MAX_SHOWN_WARNINGS = 8
PROGRESS_INTERVAL_S = 0.5

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXECUTING = re.compile(r"^Executing task '?([^' ]+)'?")
_CACHE_HIT = re.compile(r"^Task '?([^' ]+)'? cache hit")
_NUMBERED_TASK = re.compile(r"-\d+$")
# A warning's first line: "XWarning: ..." (python), a WARNING log level, "warning: ...", or a
# library's own "... is deprecated" notice. Python's echo of the source line that warned does not
# match (its category is followed by "," or ")", not ":").
_WARNING_LINE = re.compile(
    r"\b[A-Z][A-Za-z]*Warning:|\bWARNING\b|^[Ww]arning:|^(?!.*\bwarn\().*\b[Dd]eprecated\b"
)
_WARNING_PREFIXES = (
    re.compile(r"^\[KFP Executor [^\]]*\]:\s*"),  # the executor's own log prefix
    re.compile(r"^\S+\.py:\d+:\s*"),  # python's "file.py:12: UserWarning: ..."
    re.compile(r"^\d{2}:\d{2}:\d{2}(?:\.\d+)?\s*-\s*"),  # kfp's "16:02:50.795 - WARNING - "
)
# Kept out of a failed task's tail: the executor-input JSON kfp echoes, and kfp's own lines.
_NOT_IN_TAIL = re.compile(
    r'^(?:[\[{],?$|[\]}]|"[^"]*":|\d\d:\d\d:\d\d\.\d+ - |-{20,}$|Streamed logs)'
)
_STEP_WORD = re.compile(r"\bstep[s]?\s*[=:]?\s*(\d{1,7})\s*(?:/|of)\s*(\d{1,7})", re.IGNORECASE)


def stage_of(task_name: str) -> str:
    """``merge-adapter-2`` -> ``merge_adapter``: the component a task runs, from its name."""
    return _NUMBERED_TASK.sub("", task_name).replace("-", "_")


def _plain(text: str) -> str:
    return _ANSI.sub("", text)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e9:
        return f"{int(value):,}"
    return f"{value:.3g}"


def _size(num_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} GB"  # pragma: no cover - loop always returns


def output_metadata(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Every output artifact's metadata merged, plus parameter outputs under their own name."""
    merged: dict[str, Any] = {}
    for name, value in outputs.items():
        metadata = getattr(value, "metadata", None)
        if isinstance(metadata, Mapping):
            merged.update(metadata)
        elif isinstance(value, list) and value and hasattr(value[0], "metadata"):
            for item in value:
                merged.update(getattr(item, "metadata", {}) or {})
        else:
            merged[f"output:{name}"] = value
    return merged


def _pick(metadata: Mapping[str, Any], *keys: str) -> float | None:
    for key in keys:
        if key in metadata:
            value = _number(metadata[key])
            if value is not None:
                return value
    return None


def _matching(metadata: Mapping[str, Any], pattern: str) -> dict[str, float]:
    found = {}
    for key, value in metadata.items():
        number = _number(value)
        if number is not None and re.search(pattern, key):
            found[key] = number
    return found


def key_figure(metadata: Mapping[str, Any]) -> str:
    """The figure a person wants to see when a task ends, read from its outputs' metadata.

    Recognised by the metadata keys the stages write (not by task name), first match wins:
    datasets (records, modules), training losses, retrieval before/after, GGUF files, a model's
    architecture, a report; anything else gives an empty string.
    """
    parts: list[str] = []
    tuned_nll = _pick(metadata, "tuned_assistant_nll")
    if tuned_nll is not None:  # evaluate
        text = f"NLL base {_pick(metadata, 'base_assistant_nll') or float('nan'):.3f} -> "
        text += f"tuned {tuned_nll:.3f}"
        for key, label in (("tuned_token_f1", "F1"), ("tuned_french_share", "French")):
            value = _pick(metadata, key)
            if value is not None:
                text += f", {label} {value:.2f}"
        return text + f" ({metadata.get('quant', '')}, {_fmt(_pick(metadata, 'items') or 0)} items)"
    promoted = _pick(metadata, "promoted_modules")
    if promoted is not None:  # promote
        rejected = _pick(metadata, "rejected_modules") or 0
        return f"{_fmt(promoted)} promoted, {_fmt(rejected)} rejected"
    if metadata.get("raft") == "off":
        return f"off (raft=false): the {metadata.get('adapter_from', 'sft')} adapter passed on"
    kept = _pick(metadata, "records_kept")
    if kept is not None:
        modules = _pick(metadata, "module_count")
        text = f"{_fmt(kept)} records kept"
        if modules is not None:
            text += f", {_fmt(modules)} modules"
            if isinstance(metadata.get("modules"), str) and metadata["modules"]:
                text += f" ({metadata['modules'].replace(',', ', ')})"
        mined = _pick(metadata, "module_records")
        if mined is not None:
            text += f", {_fmt(mined)} mined from code"
        return text
    first = _pick(metadata, "train_loss_first", "loss_first")
    last = _pick(metadata, "train_loss_last", "loss_last")
    if first is not None and last is not None:
        steps = _pick(metadata, "steps", "global_step", "max_steps")
        parts.append(
            f"train loss {first:.3g} -> {last:.3g}" + (f" in {_fmt(steps)} steps" if steps else "")
        )
        eval_before = _pick(metadata, "eval_loss_before")
        eval_after = _pick(metadata, "eval_loss_after", "eval_loss_last", "eval_loss")
        if eval_before is not None and eval_after is not None:
            parts.append(f"eval loss {eval_before:.3g} -> {eval_after:.3g}")
        elif eval_after is not None:
            parts.append(f"eval loss {eval_after:.3g}")
    before = _pick(metadata, "retrieval_before_mrr")
    after = _pick(metadata, "retrieval_after_mrr")
    if before is not None and after is not None:
        parts.append(f"retrieval MRR {before:.3f} -> {after:.3f}")
    phases = [
        phase
        for phase in ("mntp", "simcse", "supervised")
        if _pick(metadata, f"{phase}_loss_first") is not None
    ]
    if phases and first is None:
        losses = ", ".join(
            f"{phase} {_pick(metadata, f'{phase}_loss_first'):.3g} -> "
            f"{_pick(metadata, f'{phase}_loss_last'):.3g}"
            for phase in phases
            if _pick(metadata, f"{phase}_loss_last") is not None
        )
        parts.append(f"loss {losses}")
    if parts:
        return "; ".join(parts)
    chat_files = _pick(metadata, "chat_files")
    encoder_files = _pick(metadata, "encoder_files")
    if chat_files is not None or encoder_files is not None:
        count = int((chat_files or 0) + (encoder_files or 0))
        text = f"{count} GGUF files"
        total = _pick(metadata, "total_bytes")
        if total is not None:
            text += f", {_size(total)}"
        verified = _pick(metadata, "verified")
        if verified is not None:
            text += ", verified in llama.cpp" if verified else ", NOT verified"
        cosines = _matching(metadata, r"_(logits|embedding)_min_cosine$")
        if cosines:
            text += f", min cosine vs HF {min(cosines.values()):.3f}"
        return text
    if isinstance(metadata.get("model_type"), str):
        text = f"{metadata['model_type']} model"
        parameters = _pick(metadata, "parameters")
        if parameters:
            text += f", {parameters / 1e6:.2f}M parameters"
        elif metadata.get("architectures"):
            text += f" ({metadata['architectures']})"
        return text
    report = metadata.get("output:Output")
    if isinstance(report, str) and '"report"' in report:
        return "report written"
    return ""


@dataclass
class TaskRecord:
    """One task of this attempt, as the console and ``state.json`` see it."""

    name: str
    stage: str
    module: str = ""
    status: str = "running"  # running, done, cached, failed
    seconds: float = 0.0
    figure: str = ""
    log_path: Path | None = None
    started: float = field(default_factory=time.monotonic)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    progress: tuple[int, int] | None = None
    json_depth: int = 0

    @property
    def label(self) -> str:
        return f"{self.stage} [{self.module}]" if self.module else self.stage


class _Router(io.TextIOBase):
    """sys.stdout while the pipeline runs: files each write under the task of its thread."""

    def __init__(self, console: RunConsole) -> None:
        super().__init__()
        self._console = console
        self._partial: dict[int, str] = {}

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        thread = threading.get_ident()
        buffered = self._partial.pop(thread, "") + text
        *lines, rest = buffered.split("\n")
        if rest:
            self._partial[thread] = rest
        for line in lines:
            self._console.route_line(thread, line)
        return len(text)

    def flush(self) -> None:
        for thread in list(self._partial):
            self._console.route_line(thread, self._partial.pop(thread))


class RunConsole:
    """Captures a kfp.local run; see the module docstring. Use as a context manager."""

    def __init__(
        self,
        run_dir: str | Path,
        out: TextIO | None = None,
        *,
        tty: bool | None = None,
        stamp: str | None = None,
    ) -> None:
        self.out = out if out is not None else sys.stdout
        self.tty = bool(tty if tty is not None else getattr(self.out, "isatty", lambda: False)())
        stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.logs_dir = Path(run_dir) / "logs" / stamp
        self.tasks: list[TaskRecord] = []
        self.warnings_shown: list[str] = []
        self.warnings_hidden = 0
        self._seen_warnings: set[str] = set()
        self._by_thread: dict[int, TaskRecord] = {}
        self._pending: dict[int, tuple[str, str]] = {}
        self._cache_hits: set[int] = set()
        self._lock = threading.RLock()
        self._run_log: TextIO | None = None
        self._status_width = 0
        self._last_status = 0.0
        self._exits: contextlib.ExitStack | None = None

    # -- what callers read -------------------------------------------------------------------
    @property
    def executed(self) -> list[str]:
        return [task.name for task in self.tasks if task.status == "done"]

    @property
    def cached(self) -> list[str]:
        return [task.name for task in self.tasks if task.status == "cached"]

    @property
    def failed(self) -> list[TaskRecord]:
        return [task for task in self.tasks if task.status == "failed"]

    @property
    def run_log(self) -> Path:
        return self.logs_dir / "run.log"

    # -- context -----------------------------------------------------------------------------
    def __enter__(self) -> RunConsole:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        latest = self.logs_dir.parent / "latest"
        with contextlib.suppress(OSError):
            partial = latest.with_name(f".latest.{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            partial.symlink_to(self.logs_dir.name)
            os.replace(partial, latest)
        self._run_log = (self.logs_dir / "run.log").open("a", encoding="utf-8")
        stack = contextlib.ExitStack()
        stack.enter_context(_restored_print_and_handlers())
        stack.enter_context(contextlib.redirect_stdout(_Router(self)))
        stack.enter_context(self._warnings_once())
        stack.enter_context(self._log_filter())
        stack.enter_context(self._task_hook())
        if self.tty:
            stack.enter_context(self._ticker())
        self._exits = stack
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            sys.stdout.flush()
        finally:
            if self._exits is not None:
                self._exits.close()
            self._clear_status()
            with self._lock:
                for task in self.tasks:
                    self._close_task_log(task)
                if self._run_log is not None:
                    self._run_log.close()
                    self._run_log = None

    @contextlib.contextmanager
    def _ticker(self) -> Iterator[None]:
        """Refresh the progress line twice a second while tasks run (terminal only)."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(PROGRESS_INTERVAL_S):
                self.tick()

        thread = threading.Thread(target=loop, name="mongars-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=2)

    @contextlib.contextmanager
    def _warnings_once(self) -> Iterator[None]:
        original = warnings.showwarning

        def show(message: Any, category: type, filename: str, lineno: int, *_: Any) -> None:
            text = f"{category.__name__}: {message}"
            self._log_run_line(f"{filename}:{lineno}: {text}")
            self.note_warning("", text)

        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = show
            try:
                yield
            finally:
                warnings.showwarning = original

    @contextlib.contextmanager
    def _log_filter(self) -> Iterator[None]:
        console = self

        class _Events(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                console.on_log_record(record)
                return True

        events = _Events()
        root = logging.getLogger()
        previous = root.level
        # Records logged outside a task's own logging context go to run.log, not to stderr.
        to_run_log = logging.StreamHandler(sys.stdout)
        to_run_log.setFormatter(logging.Formatter("%(levelname)s - %(message)s"))
        root.addHandler(to_run_log)
        root.addFilter(events)
        # kfp.local logs cache hits at INFO outside its own logging context; let them through.
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.removeFilter(events)
            root.removeHandler(to_run_log)
            root.setLevel(previous)

    @contextlib.contextmanager
    def _task_hook(self) -> Iterator[None]:
        import kfp

        if kfp.__version__ != HOOKED_KFP_VERSION:
            yield  # log lines still reach run.log; tasks are then known from kfp's messages
            return
        from kfp.local.orchestrator import task_executor

        original: Callable[..., Any] = task_executor.execute_single_task
        console = self

        def execute_single_task(*args: Any, **kwargs: Any) -> Any:
            name = str(kwargs.get("task_name", args[0] if args else "task"))
            module = _module_argument(kwargs)
            thread = threading.get_ident()
            console._pending[thread] = (name, module)
            console._cache_hits.discard(thread)
            started = time.monotonic()
            try:
                outputs, status = original(*args, **kwargs)
            except BaseException:
                console.task_ended(thread, name, module, "failed", {}, started)
                raise
            cached = thread in console._cache_hits
            state = "cached" if cached else ("done" if status.name == "SUCCESS" else "failed")
            console.task_ended(thread, name, module, state, outputs or {}, started)
            return outputs, status

        task_executor.execute_single_task = execute_single_task
        try:
            yield
        finally:
            task_executor.execute_single_task = original

    # -- events ------------------------------------------------------------------------------
    def on_log_record(self, record: logging.LogRecord) -> None:
        message = _plain(record.getMessage())
        thread = threading.get_ident()
        if executing := _EXECUTING.match(message):
            name, module = self._pending.get(thread, (executing.group(1), ""))
            self.task_started(thread, name, module)
        elif _CACHE_HIT.match(message):
            self._cache_hits.add(thread)
        elif record.levelno >= logging.WARNING and thread not in self._by_thread:
            self.note_warning("", f"{record.levelname}: {message.splitlines()[0]}")

    def task_started(self, thread: int, name: str, module: str) -> TaskRecord:
        with self._lock:
            task = TaskRecord(name=name, stage=stage_of(name), module=module)
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(filter(None, [task.stage, module])))
            task.log_path = self.logs_dir / f"{len(self.tasks) + 1:02d}-{slug}.log"
            self.tasks.append(task)
            self._by_thread[thread] = task
            self._print(f"  start   {task.label}")
            return task

    def task_ended(
        self,
        thread: int,
        name: str,
        module: str,
        status: str,
        outputs: Mapping[str, Any],
        started: float,
    ) -> None:
        with self._lock:
            task = self._by_thread.pop(thread, None)
            self._pending.pop(thread, None)
            if task is None:  # a cache hit (no "Executing" line) or an unhooked start
                task = TaskRecord(name=name, stage=stage_of(name), module=module)
                self.tasks.append(task)
            metadata = output_metadata(outputs)
            if not task.module and isinstance(metadata.get("module"), str):
                task.module = metadata["module"]
            task.status = status
            task.seconds = time.monotonic() - started
            task.figure = key_figure(metadata) if status != "failed" else ""
            self._close_task_log(task)
            seconds = "" if status == "cached" else f"{task.seconds:6.1f}s"
            word = {"done": "done", "cached": "cached", "failed": "FAILED"}[status]
            line = f"  {word:<7} {task.label:<28} {seconds:>7}"
            if task.figure:
                line += f"  {task.figure}"
            self._print(line.rstrip())

    def route_line(self, thread: int, line: str) -> None:
        """One line of output from the thread ``thread``: log it, and watch it."""
        with self._lock:
            text = _plain(line).rstrip()
            self._log_run_line(text)
            task = self._by_thread.get(thread)
            if task is None:
                return
            handle = self._task_log(task)
            handle.write(text + "\n")
            stripped = text.strip()
            if task.json_depth or (
                stripped == "{" and task.tail and task.tail[-1].endswith("Got executor_input:")
            ):
                # The executor input kfp echoes: skipped until its braces close.
                task.json_depth += sum(map(stripped.count, "{[")) - sum(map(stripped.count, "}]"))
            elif stripped and not _NOT_IN_TAIL.match(stripped):
                task.tail.append(stripped)
            for piece in stripped.split("\r"):
                progress = _STEP_WORD.search(piece)
                if progress and int(progress.group(2)) > 0:
                    done, total = int(progress.group(1)), int(progress.group(2))
                    if done <= total:
                        task.progress = (done, total)
            if _WARNING_LINE.search(stripped) and not stripped.startswith(("{", '"')):
                self.note_warning(task.label, stripped)
            self._refresh_status()

    def note_warning(self, where: str, text: str) -> None:
        message = text.strip()
        for prefix in _WARNING_PREFIXES:
            message = prefix.sub("", message)
        message = re.sub(r"^(?:INFO|WARNING)\s*-\s*", "", message).strip()
        if not message:
            return
        key = re.sub(r"(['\"]).*?\1|\[[^\]]*\]", "…", message)
        key = re.sub(r"\d+(?:\.\d+)?", "#", key)
        with self._lock:
            if key in self._seen_warnings:
                return
            self._seen_warnings.add(key)
            if len(self.warnings_shown) >= MAX_SHOWN_WARNINGS:
                self.warnings_hidden += 1
                return
            self.warnings_shown.append(message)
            short = message if len(message) <= 160 else message[:157] + "..."
            self._print(f"  warning{f' ({where})' if where else ''}: {short}")

    # -- failure -----------------------------------------------------------------------------
    def failure_report(self) -> str:
        """The failing task's last lines and its log path (empty when no task failed)."""
        if not self.failed:
            return ""
        task = self.failed[0]
        lines = [f"  last lines of {task.label} ({task.log_path}):"]
        lines += [f"    {line}" for line in task.tail]
        return "\n".join(lines)

    # -- output helpers ----------------------------------------------------------------------
    def print(self, text: str) -> None:
        """A line on the console (kept in run.log too)."""
        with self._lock:
            self._log_run_line(text)
            self._print(text)

    def _print(self, text: str) -> None:
        self._clear_status()
        self.out.write(text + "\n")
        self.out.flush()
        self._refresh_status(force=True)

    def _log_run_line(self, text: str) -> None:
        if self._run_log is not None:
            self._run_log.write(text + "\n")

    def _task_log(self, task: TaskRecord) -> TextIO:
        handle = getattr(task, "_handle", None)
        if handle is None:
            assert task.log_path is not None
            handle = task.log_path.open("a", encoding="utf-8")
            task._handle = handle  # type: ignore[attr-defined]
        return handle

    def _close_task_log(self, task: TaskRecord) -> None:
        handle = getattr(task, "_handle", None)
        if handle is not None:
            handle.close()
            task._handle = None  # type: ignore[attr-defined]

    def _refresh_status(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last_status < PROGRESS_INTERVAL_S:
            return
        self._last_status = now
        running = [task for task in self.tasks if task.status == "running"]
        if not running:
            self._clear_status()
            return
        parts = []
        for task in running:
            elapsed = now - task.started
            if task.progress:
                done, total = task.progress
                filled = int(20 * done / total)
                bar = "#" * filled + "-" * (20 - filled)
                parts.append(f"{task.label} [{bar}] {done}/{total} {elapsed:.0f}s")
            else:
                parts.append(f"{task.label} {elapsed:.0f}s")
        status = "  ... " + " | ".join(parts)
        width = max(20, _terminal_width() - 1)
        status = status[:width]
        self.out.write("\r" + status.ljust(self._status_width))
        self.out.flush()
        self._status_width = len(status)

    def _clear_status(self) -> None:
        if self.tty and self._status_width:
            self.out.write("\r" + " " * self._status_width + "\r")
            self.out.flush()
            self._status_width = 0

    def tick(self) -> None:
        """Refresh the progress line (called by a timer while tasks run on a terminal)."""
        with self._lock:
            self._refresh_status()


@contextlib.contextmanager
def _restored_print_and_handlers() -> Iterator[None]:
    """Put back ``print`` and the root logger's handlers as they were before the run.

    kfp.local swaps both per task (an indenting ``print``, its own handler); with two ParallelFor
    iterations doing so on two threads, the last restore can leave a swapped one in place, and
    everything printed after the run would come out indented or logged twice.
    """
    import builtins

    original_print = builtins.print
    root = logging.getLogger()
    handlers = root.handlers[:]
    try:
        yield
    finally:
        builtins.print = original_print
        root.handlers[:] = handlers


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 100


def _module_argument(kwargs: Mapping[str, Any]) -> str:
    """The task's ``module`` argument when it has one (a ParallelFor item), else ``""``."""
    try:
        from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils

        arguments = OrchestratorUtils.make_task_arguments(
            task_inputs_spec=kwargs["task_spec"].inputs, io_store=kwargs["io_store"]
        )
    except Exception:  # the console must never break a run
        return ""
    module = arguments.get("module")
    return module if isinstance(module, str) else ""
