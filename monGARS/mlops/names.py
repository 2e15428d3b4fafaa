"""Safe names: run ids and module names become folder names and KFP identifiers."""

from __future__ import annotations

import re

from monGARS.mlops.errors import MongarsError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_safe_name(field: str, value: str) -> str:
    """Refuse a name that could escape its folder or reach a shell (``../``, ``/``, ``;``, ...)."""
    if not _SAFE_NAME.fullmatch(value or "") or ".." in value:
        raise MongarsError(
            f"{field}: {value!r} is not a safe name; use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return value


def to_identifier(raw: str) -> str:
    """Lowercase identifier from a path or name (``monGARS/mlops`` -> ``mongars_mlops``)."""
    cleaned = re.sub(r"[^0-9A-Za-z]+", "_", raw).strip("_").lower()
    if not cleaned:
        cleaned = "module"
    if cleaned[0].isdigit():
        cleaned = f"m_{cleaned}"
    return cleaned[:64]
