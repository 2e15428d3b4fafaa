"""The run console on real kfp.local runs of small pipelines: lines per task, logs, failures.

The components here are lightweight and model-free, so the console's hook into kfp.local (task
boundaries, ParallelFor threads, cache hits, streamed output) is exercised in seconds.
"""

import builtins
import io
from pathlib import Path

import pytest
from kfp import dsl, local

from monGARS.deploy.local_console import RunConsole

pytestmark = pytest.mark.integration


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def noisy(module: str, out: dsl.Output[dsl.Model]) -> str:
    import os
    import warnings

    for step in range(1, 4):
        print(f"step {step}/3", flush=True)
    warnings.warn("the same library warning, printed by every task", FutureWarning, stacklevel=1)
    print("x" * 200, flush=True)
    os.makedirs(out.path, exist_ok=True)
    out.metadata.update({"module": module, "train_loss_first": 2.5, "train_loss_last": 1.25})
    return module


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def boom(module: str) -> str:
    print("about to fail on purpose", flush=True)
    raise ValueError(f"broken on purpose in {module}")


@dsl.pipeline(name="console-ok")
def fan_out() -> None:
    with dsl.ParallelFor(["alpha", "beta", "gamma"]) as module:
        noisy(module=module).set_caching_options(enable_caching=True)


@dsl.pipeline(name="console-fail")
def failing() -> None:
    boom(module="alpha").set_caching_options(enable_caching=False)


def _init(root: Path) -> None:
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root / "kfp"),
        enable_caching=True,
        cache_root=str(root / "cache"),
    )


def test_one_line_per_task_start_and_end_and_full_logs_on_disk(tmp_path: Path) -> None:
    _init(tmp_path)
    out = io.StringIO()
    original_print = builtins.print
    with RunConsole(tmp_path, out=out, tty=False, stamp="first") as console:
        fan_out()
    # kfp.local swaps print per task on two threads; what follows the run prints normally.
    assert builtins.print is original_print
    text = out.getvalue()
    for module in ("alpha", "beta", "gamma"):
        assert f"start   noisy [{module}]" in text
        done = next(
            line for line in text.splitlines() if line.startswith(f"  done    noisy [{module}]")
        )
        assert done.rstrip().endswith("train loss 2.5 -> 1.25"), done
    # The warning every task printed is shown once; the executor JSON never reaches the console.
    assert text.count("the same library warning") == 1
    assert "executor_input" not in text and "x" * 200 not in text
    logs = {path.name for path in (tmp_path / "logs" / "first").glob("*.log")}
    assert {name.split("-", 1)[-1] for name in logs - {"run.log"}} == {
        "noisy-alpha.log",
        "noisy-beta.log",
        "noisy-gamma.log",
    }
    assert "run.log" in logs
    for task in console.tasks:
        assert task.log_path is not None
        body = task.log_path.read_text()
        # Each task's log holds its own output only, even with two iterations running at once.
        assert "step 3/3" in body and "x" * 200 in body and "executor_input" in body
        others = {"alpha", "beta", "gamma"} - {task.module}
        assert not any(f'"module": "{other}"' in body for other in others), task.module
    assert (tmp_path / "logs" / "latest").resolve() == (tmp_path / "logs" / "first").resolve()
    assert sorted(console.executed) == ["noisy", "noisy", "noisy"] and console.cached == []


def test_cache_hits_are_one_line_each(tmp_path: Path) -> None:
    _init(tmp_path)
    with RunConsole(tmp_path, out=io.StringIO(), tty=False, stamp="first"):
        fan_out()
    out = io.StringIO()
    with RunConsole(tmp_path, out=out, tty=False, stamp="second") as console:
        fan_out()
    lines = [line for line in out.getvalue().splitlines() if "noisy" in line]
    assert len(lines) == 3 and all(line.startswith("  cached  noisy [") for line in lines)
    assert console.cached == ["noisy"] * 3 and console.executed == []


def test_failed_task_gives_its_last_lines_and_its_log(tmp_path: Path) -> None:
    _init(tmp_path)
    out = io.StringIO()
    with pytest.raises(RuntimeError), RunConsole(tmp_path, out=out, tty=False) as console:
        failing()
    assert [task.status for task in console.tasks] == ["failed"]
    failed = console.failed[0]
    assert "  FAILED  boom" in out.getvalue()
    report = console.failure_report()
    assert str(failed.log_path) in report
    assert "ValueError: broken on purpose in alpha" in report
    # The tail is the task's own output, not the executor JSON or kfp's bookkeeping lines.
    assert '"executor_input"' not in report and "outputFile" not in report
    assert "finished with status" not in report
    assert "about to fail on purpose" in failed.log_path.read_text()


def test_terminal_gets_a_progress_line_that_is_cleared(tmp_path: Path) -> None:
    _init(tmp_path)
    out = io.StringIO()
    with RunConsole(tmp_path, out=out, tty=True, stamp="tty"):
        fan_out()
    text = out.getvalue()
    assert "\r  ... noisy" in text
    # Every finished line starts clean: the progress line is wiped before anything is printed.
    for line in text.split("\n"):
        if "done" in line:
            assert line.split("\r")[-1].startswith("  done")
