"""Loading models and adapters, and the one LoRA merge: shared by sft, llm2vec, raft and export."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from monGARS.mlops.base_model import check_model_folder

ADAPTER_SUBDIR = "adapter"


def pick_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(model_dir: str | Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    base_model_dir: str | Path,
    adapter_dir: str | Path | None = None,
    *,
    merge: bool = True,
    dtype: Any = None,
    device: str | None = None,
) -> Any:
    """Load the base model, apply a LoRA adapter folder if given, merge it unless told not to."""
    import torch
    from transformers import AutoModelForCausalLM

    check_model_folder(Path(base_model_dir), "base_model")
    model = AutoModelForCausalLM.from_pretrained(
        str(base_model_dir),
        dtype=dtype or torch.float32,
        token=os.environ.get("HF_TOKEN") or None,
    )
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
        if merge:
            model = model.merge_and_unload()
    if device:
        model = model.to(device)
    return model


def check_not_prequantised(folder: Path, config: dict[str, Any], label: str = "base_model") -> None:
    """Refuse weights stored quantised: merging into them, or exporting them, loses precision."""
    from monGARS.mlops.errors import MongarsError

    if "quantization_config" in config:
        method = config["quantization_config"].get("quant_method", "?")
        raise MongarsError(
            f"{label}: {folder} is stored quantised ({method}); merging into quantised weights "
            "loses precision: fetch the full-precision base model"
        )


def adapter_path(stage_output_dir: str | Path) -> Path:
    """Where an sft/raft output keeps its PEFT adapter."""
    return Path(stage_output_dir) / ADAPTER_SUBDIR


def merge_adapter_to_folder(
    base_model_dir: str | Path, stage_output_dir: str | Path, out_dir: str | Path
) -> dict[str, Any]:
    """Write base + the stage's LoRA adapter, merged, as a standalone HF folder (atomically).

    The stage's ``training_config.json`` and ``metrics.json`` travel along as ``provenance.json``
    so export and the report know which stage (sft or raft) produced the chat model.
    """
    import json

    from monGARS.mlops.atomic import atomic_dir, write_json
    from monGARS.mlops.errors import MongarsError

    stage_dir = Path(stage_output_dir)
    adapter = adapter_path(stage_dir)
    if not (adapter / "adapter_config.json").is_file():
        raise MongarsError(
            f"adapter: {adapter} has no adapter_config.json; is it an sft/raft output?"
        )
    provenance: dict[str, Any] = {}
    for name in ("training_config.json", "metrics.json"):
        path = stage_dir / name
        if path.is_file():
            provenance[name.removesuffix(".json")] = json.loads(path.read_text(encoding="utf-8"))
    check_not_prequantised(Path(base_model_dir), check_model_folder(Path(base_model_dir), "base"))
    model = load_causal_lm(base_model_dir, adapter, merge=True)
    # sft saves the tokenizer it trained with (a default chat template installed where the base
    # had none) next to the adapter; that is the one the chat model must ship with.
    tokenizer_dir = adapter if (adapter / "tokenizer_config.json").is_file() else base_model_dir
    tokenizer = load_tokenizer(tokenizer_dir)
    with atomic_dir(out_dir) as scratch:
        model.save_pretrained(scratch, safe_serialization=True)
        tokenizer.save_pretrained(scratch)
        write_json(scratch / "provenance.json", provenance)
    parameters = sum(p.numel() for p in model.parameters())
    return {"parameters": parameters, "model_type": model.config.model_type}
