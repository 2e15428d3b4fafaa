"""Data-parallel training inside one pod: one rank per device, every rank trains, rank 0 writes.

A GPU task that gets N devices (``mongars compile --accelerator-count N``) runs its stage as N
processes, each with its own copy of the (4-bit) base model on its own device. The stage function
itself decides, before it loads anything: called in a plain process (the component body, the CLI)
with ``num_processes`` resolving to N > 1, it relaunches itself as N ranks with torch's own
launcher, ``python -m torch.distributed.run --standalone --nproc-per-node N`` (torchrun; an
argument list, never a shell string), and returns rank 0's result. Each rank runs the same stage
function with ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` set by torchrun (torch
``distributed/run.py``), so it trains instead of launching again. A stage started by an outside
torchrun (a Kubeflow Trainer job, docs/cluster.md) is a rank in the same way.

What every rank shares and what only rank 0 does:

- batches: the configured global batch (``batch_size x gradient_accumulation_steps``) stays the
  global batch; each rank takes ``global / N`` of it per optimizer step (:func:`split_batch`), so
  step counts, the learning-rate schedule and what one step sees are the same for any N;
- writes: checkpoints, metrics, adapters and every artifact are written by rank 0 only
  (:func:`main_writes`), atomically as in a single process; the other ranks wait at barriers;
- the launcher gives all ranks one scratch folder (:func:`shared_dir`), where the Trainer's
  per-rank files (RNG states) and a ``gs://`` checkpoint mirror live.

With N = 1 nothing of this runs: no process group, no launcher, the same code path as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from monGARS.mlops.errors import MongarsError

LOG = logging.getLogger(__name__)

SCRATCH_ENV = "MONGARS_DDP_SCRATCH"
"""Set by :func:`launch` for its ranks: the folder they share (call, result, errors, scratch)."""

_WORKER_MODULE = "monGARS.mlops.training.common.distributed"
_CALL_FILE = "call.json"
_RESULT_FILE = "result.json"
_COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place among the stage's ranks (a plain process is rank 0 of 1)."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_world() -> World:
    """The world torchrun describes in the environment; ``World()`` outside a launch."""
    size = int(os.environ.get("WORLD_SIZE") or 1)
    if size <= 1:
        return World()
    return World(size, int(os.environ.get("RANK") or 0), int(os.environ.get("LOCAL_RANK") or 0))


def process_count(num_processes: int) -> int:
    """How many ranks the stage runs as: ``num_processes``, or one per visible GPU when it is 0.

    ``torch.cuda.device_count()`` counts what the pod was given (``nvidia.com/gpu: N``) without
    creating a CUDA context in this launching process. On CPU, 0 means one process; an explicit
    count runs that many gloo ranks (what the tests do).
    """
    import torch

    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if num_processes == 0:
        return max(devices, 1)
    if devices and num_processes > devices:
        raise MongarsError(
            f"num_processes: {num_processes} ranks need {num_processes} GPUs but this pod sees "
            f"{devices}; use 0 (one rank per GPU) or at most {devices}"
        )
    return num_processes


# ---------------------------------------------------------------------------- the global batch


def batch_problem(batch_size: int, accumulation: int, world_size: int, prefix: str = "") -> str:
    """Why ``batch_size x accumulation`` cannot be split evenly across ranks ("" when it can)."""
    global_batch = batch_size * accumulation
    if world_size <= 1 or global_batch % world_size == 0:
        return ""
    return (
        f"{prefix}batch_size: the global batch {prefix}batch_size x "
        f"{prefix}gradient_accumulation_steps = {batch_size} x {accumulation} = {global_batch} "
        f"does not divide across {world_size} ranks; make it a multiple of {world_size}"
    )


def split_batch(batch_size: int, accumulation: int, world_size: int) -> tuple[int, int]:
    """Per-rank (micro batch, accumulation) whose product times ``world_size`` is the global batch.

    The global batch ``batch_size x accumulation`` is what one optimizer step sees, whatever the
    number of ranks; each rank takes ``global / world_size`` examples of it, in micro batches of at
    most ``batch_size`` (the largest divisor of its share that is not larger).
    """
    problem = batch_problem(batch_size, accumulation, world_size)
    if problem:
        raise MongarsError(problem)
    share = batch_size * accumulation // world_size
    micro = max(d for d in range(1, min(batch_size, share) + 1) if share % d == 0)
    return micro, share // micro


def shard(count: int, world: World) -> slice:
    """This rank's contiguous slice of ``count`` items (near-equal parts, rank order)."""
    base, extra = divmod(count, world.size)
    start = world.rank * base + min(world.rank, extra)
    return slice(start, start + base + (1 if world.rank < extra else 0))


# ---------------------------------------------------------------------------- launching


def launch(entry: str, arguments: dict[str, Any], processes: int) -> dict[str, Any]:
    """Run ``entry(**arguments)`` as ``processes`` ranks with torchrun; return rank 0's result.

    ``entry`` is ``"package.module:function"``; ``arguments`` must be JSON values (paths as
    strings, the config as a mapping). A user mistake raised in a rank (``MongarsError``) is raised
    here with the same one line; a rank that crashed or was killed ends the launch with an error
    naming the exit status (torchrun then stops the other ranks).
    """
    scratch = Path(tempfile.mkdtemp(prefix="mongars-ddp-"))
    try:
        (scratch / _CALL_FILE).write_text(
            json.dumps({"entry": entry, "arguments": arguments}), encoding="utf-8"
        )
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nnodes=1",
            f"--nproc-per-node={processes}",
            "--max-restarts=0",
            "-m",
            _WORKER_MODULE,
            str(scratch / _CALL_FILE),
        ]
        LOG.info("training as %d data-parallel ranks: %s", processes, entry)
        environment = {**os.environ, SCRATCH_ENV: str(scratch)}
        completed = subprocess.run(command, env=environment, check=False)
        result = scratch / _RESULT_FILE
        if completed.returncode == 0 and result.is_file():
            loaded: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
            return loaded
        errors = sorted(scratch.glob("error-*.txt"), key=lambda p: int(p.stem.split("-")[1]))
        if errors:
            raise MongarsError(errors[0].read_text(encoding="utf-8").strip())
        raise RuntimeError(
            f"training ranks: torch.distributed.run exited with status {completed.returncode} "
            "(a rank crashed or was killed; its log is above); running the stage again resumes "
            "from its last complete checkpoint"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_rank(call_file: Path) -> int:
    """One rank: call the stage function; rank 0 leaves its result for the launcher."""
    from monGARS.mlops.atomic import write_json

    spec = json.loads(call_file.read_text(encoding="utf-8"))
    module_name, _, function_name = spec["entry"].partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    world = current_world()
    if not world.is_main:  # one copy of the stage's progress lines in the log
        logging.getLogger("monGARS").setLevel(logging.WARNING)
    try:
        result = function(**spec["arguments"])
    except MongarsError as error:
        (call_file.parent / f"error-{world.rank}.txt").write_text(str(error), encoding="utf-8")
        return 2
    finally:
        shutdown()
    if world.is_main:
        write_json(call_file.parent / _RESULT_FILE, result)
    return 0


# ---------------------------------------------------------------------------- inside a rank


def init(world: World) -> None:
    """Join the process group (NCCL on GPUs, gloo on CPU) and pin this rank's GPU.

    A no-op for a single process. The Trainer (accelerate's ``PartialState``) reuses this group.
    """
    if not world.distributed:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(world.local_rank)
    # Ranks wait while rank 0 alone works (raft mines its examples, a gs:// checkpoint downloads):
    # a long collective timeout. A rank that dies is caught by torchrun at once, not by this.
    dist.init_process_group("nccl" if cuda else "gloo", timeout=_COLLECTIVE_TIMEOUT)


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active(world: World) -> bool:
    if not world.distributed:
        return False
    import torch.distributed as dist

    return dist.is_initialized()


def _device() -> Any:
    """Where collective tensors live: the rank's GPU with NCCL, the CPU with gloo."""
    import torch
    import torch.distributed as dist

    return torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")


def barrier(world: World) -> None:
    """Wait for every rank (a no-op for a single process)."""
    if _active(world):
        import torch.distributed as dist

        dist.barrier()


def from_main(world: World, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (picklable values)."""
    if not _active(world):
        return value
    import torch.distributed as dist

    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def sum_over_ranks(world: World, value: float) -> float:
    """The sum of ``value`` over all ranks."""
    if not _active(world):
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_device())
    dist.all_reduce(tensor)
    return float(tensor.item())


def gather_objects(world: World, value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order."""
    if not _active(world):
        return [value]
    import torch.distributed as dist

    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, value)
    return gathered


def sum_gradients(world: World, parameters: Sequence[Any]) -> None:
    """Add up the parameters' gradients over the ranks, in one coalesced all-reduce.

    Each rank's loss is its share of the global batch's loss (shares add up to the whole), so
    the sum of the ranks' gradients is the global batch's gradient. Parameters without a gradient
    take part as zeros, so every rank reduces the same buffer.
    """
    if not _active(world):
        return
    import torch
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for parameter, grad in zip(parameters, grads, strict=True):
        count = grad.numel()
        parameter.grad = flat[offset : offset + count].view_as(grad).to(grad.dtype)
        offset += count


def gather_rows(world: World, local: Any) -> Any:
    """All ranks' rows of ``local`` [n_r, d], concatenated in rank order, with gradients.

    Ranks may hold different row counts. Forward: an all-gather (padded to the largest count).
    Backward: every rank computed the same global loss from the same gathered tensor, so the
    gradient reaching this rank's rows is the sum of all ranks' gradients for them (an
    all-reduce), which is ``world.size`` times the gradient of one copy of the loss; callers
    divide their loss by ``world.size`` (their share) and then sum the ranks' gradients
    (:func:`sum_gradients`) to get the global batch's gradient exactly. The same contract as
    ``torch.distributed.nn.functional.all_gather``, whose backward needs a reduce-scatter that
    gloo lacks.
    """
    if not _active(world):
        return local
    return _GatherRows.apply(local)


def _make_gather_rows() -> Any:
    import torch
    import torch.distributed as dist

    class GatherRows(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, local: Any) -> Any:
            sizes = torch.tensor([local.shape[0]], device=local.device)
            all_sizes = [torch.zeros_like(sizes) for _ in range(dist.get_world_size())]
            dist.all_gather(all_sizes, sizes)
            counts = [int(s.item()) for s in all_sizes]
            padded = local.new_zeros((max(counts), *local.shape[1:]))
            padded[: local.shape[0]] = local
            buffers = [torch.zeros_like(padded) for _ in counts]
            dist.all_gather(buffers, padded.contiguous())
            ctx.counts = counts
            ctx.rank = dist.get_rank()
            return torch.cat([b[:c] for b, c in zip(buffers, counts, strict=True)])

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            grad = grad.contiguous()
            dist.all_reduce(grad)
            start = sum(ctx.counts[: ctx.rank])
            return grad[start : start + ctx.counts[ctx.rank]]

    return GatherRows


class _LazyGather:
    """Builds the autograd function on first use, so importing this module needs no torch."""

    _function: Any = None

    def apply(self, local: Any) -> Any:
        if _LazyGather._function is None:
            _LazyGather._function = _make_gather_rows()
        return _LazyGather._function.apply(local)


_GatherRows = _LazyGather()


# ---------------------------------------------------------------------------- one writer


@contextlib.contextmanager
def main_writes(world: World, out_dir: str | os.PathLike[str]) -> Iterator[Path | None]:
    """Rank 0: ``atomic_dir(out_dir)``; any other rank: ``None`` and nothing is created.

    The block still runs on every rank (training is collective); writes are guarded by
    ``if scratch is not None``.
    """
    if not world.is_main:
        yield None
        return
    from monGARS.mlops.atomic import atomic_dir

    with atomic_dir(out_dir) as scratch:
        yield scratch


def shared_dir(prefix: str) -> Path:
    """A scratch folder every rank of this launch sees under the same path.

    Under :func:`launch`, a folder inside the launch's scratch (removed with it); in a single
    process, or under an outside torchrun, a fresh temporary folder.
    """
    root = os.environ.get(SCRATCH_ENV)
    if root:
        folder = Path(root) / prefix
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-"))


def main(argv: list[str] | None = None) -> int:
    """Entry of each rank started by :func:`launch`: ``python -m ... CALL_FILE``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: python -m {_WORKER_MODULE} CALL_FILE", file=sys.stderr)
        return 2
    return _run_rank(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
