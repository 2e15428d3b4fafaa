"""The input checks every training stage starts with: module name, base model, datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monGARS.mlops.base_model import check_model_folder
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.names import check_safe_name


def check_training_inputs(base: Path, datasets: Path, module: str) -> dict[str, Any]:
    """Refuse a bad module name, a missing base model or datasets folder; the base's config."""
    check_safe_name("module", module)
    if not base.exists():
        raise MongarsError(f"base_model: {base} does not exist; give the fetched model folder")
    model_config = check_model_folder(base, "base_model")
    if not (datasets / "modules").is_dir():
        raise MongarsError(f"datasets: {datasets} has no modules/ folder; run build_datasets first")
    return model_config
