"""Facts about the process a stage ran in, recorded with its outputs: versions and peak memory."""

from __future__ import annotations

import resource
from importlib.metadata import PackageNotFoundError, version

RECORDED_PACKAGES = ("mongars-mlops", "torch", "transformers", "peft", "accelerate", "unsloth")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide what a training stage computes."""
    found = {}
    for package in RECORDED_PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def peak_memory_mb(cuda: bool) -> tuple[float, str]:
    """Peak memory in MiB and what was measured: CUDA allocations, or the process's peak RSS."""
    if cuda:
        import torch

        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_peak_rss"


def empty_cuda_cache() -> None:
    """Hand cached CUDA memory back between models (a no-op without a GPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
