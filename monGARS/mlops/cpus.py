"""How many CPUs this process may use: the container's cgroup CPU limit, not the host's count.

A pod with ``limits.cpu: 4`` on a 64-core node sees 64 CPUs in ``os.cpu_count()`` but is
throttled to 4 CPU-seconds per second by the CFS quota of its cgroup. The limit is read from:

- cgroup v2: ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``) in the process's cgroup
  and every ancestor up to the mount root (the tightest one wins);
- cgroup v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota ``-1``: no limit) in the
  ``cpu`` controller's hierarchy, walked the same way;

then capped by the CPUs the scheduler lets the process run on (``os.sched_getaffinity``, which
also reflects cpuset limits). A fractional limit rounds up: ``1500m`` gives 2 workers, which
keep 1.5 CPUs busy where one worker would leave half a CPU idle.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def affinity_cpus() -> int:
    """CPUs the scheduler lets this process run on (all CPUs where affinity is unsupported)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _v2_limit(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")
    if not text:
        return None
    parts = text.split()
    if len(parts) not in (1, 2) or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) == 2 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_limit(folder: Path) -> float | None:
    quota_text = _read(folder / "cpu.cfs_quota_us")
    period_text = _read(folder / "cpu.cfs_period_us")
    try:
        quota = int(quota_text or "")
        period = int(period_text or "")
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _levels(mount: Path, cgroup_path: str) -> list[Path]:
    """The process's cgroup folder under ``mount`` and its ancestors, up to ``mount`` itself.

    Inside a container without a cgroup namespace, ``/proc/self/cgroup`` names the host-side
    path while the container sees its own cgroup at the mount root: folders that do not exist
    are skipped, and the mount root is always looked at.
    """
    levels = []
    relative = Path(cgroup_path.strip("/")) if cgroup_path.strip("/") else None
    while relative is not None and relative != Path("."):
        levels.append(mount / relative)
        relative = relative.parent if relative.parent != Path(".") else None
    levels.append(mount)
    return [level for level in levels if level.is_dir()]


def _membership(proc_self_cgroup: Path) -> tuple[str | None, str | None]:
    """(v2 path, v1 cpu-controller path) of this process, from ``/proc/self/cgroup``."""
    v2_path = v1_path = None
    for line in (_read(proc_self_cgroup) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2_path = path
        elif "cpu" in controllers.split(","):
            v1_path = path
    return v2_path, v1_path


def cgroup_cpu_limit(
    root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP
) -> float | None:
    """The CFS CPU limit of this process's cgroup in CPUs (e.g. 2.5), or None when unlimited."""
    v2_path, v1_path = _membership(proc_self_cgroup)
    limits: list[float] = []
    if (root / "cgroup.controllers").is_file():  # a pure cgroup v2 (unified) mount
        for level in _levels(root, v2_path or "/"):
            limit = _v2_limit(level)
            if limit is not None:
                limits.append(limit)
    else:
        mounts = [
            folder
            for folder in sorted(root.iterdir() if root.is_dir() else [])
            if folder.is_dir() and "cpu" in folder.name.split(",")
        ]
        for mount in mounts[:1]:
            for level in _levels(mount, v1_path or "/"):
                limit = _v1_limit(level)
                if limit is not None:
                    limits.append(limit)
    return min(limits) if limits else None


def available_cpus(root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """Whole CPUs this process may keep busy: cgroup limit rounded up, capped by affinity."""
    cpus = affinity_cpus()
    limit = cgroup_cpu_limit(root, proc_self_cgroup)
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit - 1e-9)))
    return cpus


def thread_budget(
    cap: int = 8, root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP
) -> int:
    """Threads one process should compute with (llama.cpp's ``n_threads`` and ``n_threads_batch``).

    ``OMP_NUM_THREADS``, when it is a positive integer, is the budget: whoever starts processes
    that share cores gives each one that many (``make run`` and the tests set 1, as kfp.local runs
    a loop's tasks side by side). llama.cpp does not read it: its OpenMP region names its own
    thread count, so the project passes the budget on. Otherwise the CPUs this process may use,
    at most ``cap`` (decoding gains little beyond 8 threads): the cgroup limit, not the node's
    count, which in a pod with ``limits.cpu: 4`` on a 64-core node would give 64 threads to a
    4-CPU quota.
    """
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return min(available_cpus(root, proc_self_cgroup), cap)
