"""Run a user-supplied converter (``export_cmd``) for architectures the built-in writer lacks.

The template is split into an argument list first and the placeholders are substituted inside each
argument, so paths with spaces or shell metacharacters stay single arguments and nothing ever
goes through a shell.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from monGARS.mlops.errors import MongarsError


def build_export_args(template: str, model_dir: str | Path, gguf_path: str | Path) -> list[str]:
    """The argument list ``template`` names, placeholders replaced argument by argument."""
    try:
        parts = shlex.split(template)
    except ValueError as error:
        raise MongarsError(f"export_cmd: cannot be split into arguments ({error})") from None
    if not parts:
        raise MongarsError("export_cmd: is empty; give a command with {model_dir} and {gguf_path}")
    values = {"{model_dir}": str(model_dir), "{gguf_path}": str(gguf_path)}
    args = []
    for part in parts:
        for placeholder, value in values.items():
            part = part.replace(placeholder, value)
        args.append(part)
    return args


def run_export_cmd(
    template: str, model_dir: str | Path, gguf_path: str | Path, timeout_s: float = 6 * 3600
) -> list[str]:
    """Run the converter; it must leave an f16 GGUF at ``gguf_path``. Returns the argv it ran."""
    args = build_export_args(template, model_dir, gguf_path)
    try:
        result = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError:
        raise MongarsError(
            f"export_cmd: program {args[0]!r} not found; check the command"
        ) from None
    except subprocess.TimeoutExpired:
        raise MongarsError(
            f"export_cmd: {args[0]} did not finish within {timeout_s:.0f} s"
        ) from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise MongarsError(
            f"export_cmd: {args[0]} exited with {result.returncode} ({tail[0][:300]})"
        )
    if not Path(gguf_path).is_file():
        raise MongarsError(
            f"export_cmd: {args[0]} succeeded but wrote nothing at {{gguf_path}} ({gguf_path})"
        )
    return args
