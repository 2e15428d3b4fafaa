"""CPU count from the container's cgroup limit (v2 cpu.max, v1 CFS quota), on fake cgroup trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from monGARS.mlops import cpus
from monGARS.mlops.cpus import available_cpus, cgroup_cpu_limit, thread_budget


def v2_tree(tmp_path: Path, limits: dict[str, str], membership: str = "/") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    root.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    for relative, value in limits.items():
        folder = root / relative.strip("/") if relative.strip("/") else root
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cpu.max").write_text(value + "\n")
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(f"0::{membership}\n")
    return root, proc


def v1_tree(
    tmp_path: Path, quota: str, period: str = "100000", mount: str = "cpu,cpuacct"
) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    folder = root / mount
    folder.mkdir(parents=True)
    (root / "memory").mkdir()
    (folder / "cpu.cfs_quota_us").write_text(quota + "\n")
    (folder / "cpu.cfs_period_us").write_text(period + "\n")
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(
        "12:memory:/kubepods/pod1\n4:cpu,cpuacct:/kubepods/pod1/abc\n1:name=systemd:/\n"
    )
    return root, proc


@pytest.fixture
def many_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 64-CPU host, so that only the cgroup limit can lower the count."""
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: 64)


@pytest.mark.parametrize(
    ("cpu_max", "limit", "count"),
    [
        ("400000 100000", 4.0, 4),
        ("150000 100000", 1.5, 2),  # a fractional limit rounds up
        ("50000 100000", 0.5, 1),
        ("200000", 2.0, 2),  # period omitted: the kernel default 100 ms
        ("max 100000", None, 64),  # no limit: the host's CPUs (affinity)
    ],
)
def test_cgroup_v2_cpu_max(
    tmp_path: Path, many_cpus: None, cpu_max: str, limit: float | None, count: int
) -> None:
    root, proc = v2_tree(tmp_path, {"/": cpu_max})
    assert cgroup_cpu_limit(root, proc) == limit
    assert available_cpus(root, proc) == count


def test_cgroup_v2_tightest_ancestor_wins(tmp_path: Path, many_cpus: None) -> None:
    root, proc = v2_tree(
        tmp_path,
        {"/": "max 100000", "/kubepods": "800000 100000", "/kubepods/pod/ctr": "300000 100000"},
        membership="/kubepods/pod/ctr",
    )
    assert cgroup_cpu_limit(root, proc) == 3.0
    root2, proc2 = v2_tree(
        tmp_path / "b",
        {"/kubepods": "100000 100000", "/kubepods/pod/ctr": "max 100000"},
        membership="/kubepods/pod/ctr",
    )
    assert available_cpus(root2, proc2) == 1


def test_cgroup_v2_namespace_path_missing_falls_back_to_the_mount_root(
    tmp_path: Path, many_cpus: None
) -> None:
    # Without a cgroup namespace the process names a host path the container cannot see.
    root, proc = v2_tree(tmp_path, {"/": "600000 100000"}, membership="/system.slice/docker-1")
    assert available_cpus(root, proc) == 6


def test_cgroup_v1_cfs_quota(tmp_path: Path, many_cpus: None) -> None:
    root, proc = v1_tree(tmp_path, "250000")
    assert cgroup_cpu_limit(root, proc) == 2.5
    assert available_cpus(root, proc) == 3
    unlimited_root, unlimited_proc = v1_tree(tmp_path / "u", "-1", mount="cpu")
    assert cgroup_cpu_limit(unlimited_root, unlimited_proc) is None
    assert available_cpus(unlimited_root, unlimited_proc) == 64


@pytest.mark.parametrize("content", ["", "garbage here", "0 100000", "100000 0", "a b c"])
def test_malformed_or_zero_limits_are_ignored(
    tmp_path: Path, many_cpus: None, content: str
) -> None:
    root, proc = v2_tree(tmp_path, {"/": content})
    assert cgroup_cpu_limit(root, proc) is None
    assert available_cpus(root, proc) == 64


def test_no_cgroup_at_all_uses_affinity(tmp_path: Path, many_cpus: None) -> None:
    assert available_cpus(tmp_path / "absent", tmp_path / "absent_proc") == 64


def test_affinity_caps_a_generous_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: 2)
    root, proc = v2_tree(tmp_path, {"/": "1600000 100000"})
    assert available_cpus(root, proc) == 2


def test_thread_budget_is_omp_num_threads_else_the_cpus_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama.cpp's thread count: OMP_NUM_THREADS when it is a positive integer; otherwise the
    CPUs this process may use (a pod's cgroup limit, not the node's count), at most 8."""
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: 64)
    root, proc = v2_tree(tmp_path, {"/": "400000 100000"})  # limits.cpu: 4 on a 64-core node
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert thread_budget(8, root, proc) == 4
    (root / "cpu.max").write_text("max 100000\n")  # no limit: the 64 CPUs, capped
    assert thread_budget(8, root, proc) == 8 and thread_budget(16, root, proc) == 16
    for value, budget in (
        ("1", 1),
        ("12", 12),
        (" 2 ", 2),
        ("0", 8),
        ("-1", 8),
        ("4,2", 8),
        ("", 8),
    ):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert thread_budget(8, root, proc) == budget, repr(value)
