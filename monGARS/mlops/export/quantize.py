"""Quantise an f16 GGUF with llama.cpp's own quantiser (``llama_model_quantize``).

Using llama.cpp's implementation (rather than re-implementing K-quants) guarantees the files are
exactly what llama.cpp expects, including its per-tensor type choices for ``*_K_M`` mixes.
"""

from __future__ import annotations

from pathlib import Path

from monGARS.mlops.cpus import thread_budget
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.export.config import QUANT_FTYPES


def quantize_gguf(
    source: str | Path, target: str | Path, quant: str, threads: int | None = None
) -> None:
    """Write ``target`` as ``quant`` (a key of QUANT_FTYPES) from the f16 file ``source``."""
    import llama_cpp

    if quant not in QUANT_FTYPES:
        raise MongarsError(
            f"quant_types: unknown quantisation {quant!r}; "
            f"valid types are {', '.join(sorted(QUANT_FTYPES))}"
        )
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_FTYPES[quant])
    params.nthread = threads or thread_budget(cap=16)
    from llama_cpp._utils import suppress_stdout_stderr

    with suppress_stdout_stderr(disable=False):  # llama.cpp prints one line per tensor
        status = llama_cpp.llama_model_quantize(
            str(source).encode("utf-8"), str(target).encode("utf-8"), params
        )
    if status != 0 or not Path(target).is_file():
        raise MongarsError(
            f"export: llama.cpp could not quantise {Path(source).name} to {quant} "
            f"(status {status}); "
            "drop it from quant_types or check the model's tensor shapes"
        )
