"""Bidirectional attention for decoder-only models (Llama, Mistral, Qwen2) on transformers 5.x.

LLM2Vec's first step lets every token attend to every other token. The ``llm2vec`` package does it
with patched model classes pinned to transformers<=4.44; on transformers 5.x two switches suffice:

- ``config.is_causal = False``: ``masking_utils.create_causal_mask`` then builds a
  *bidirectional* mask instead, which still masks padding keys. With no padding that mask is
  ``None`` (full attention, no bias). A model with a sliding window (Mistral v0.1) goes through
  ``create_sliding_window_causal_mask``, which then builds a *windowed* bidirectional mask
  (``create_bidirectional_sliding_window_mask``: ``|i - j| <= window``), not a full one; upstream
  LLM2Vec ignores the window. They differ only past the window (4096 tokens for Mistral v0.1).
- ``self_attn.is_causal = False`` on every layer: when the mask is ``None``, SDPA and flash
  attention fall back on the module's ``is_causal`` flag, which the attention classes hard-code to
  ``True`` in ``__init__``; without this switch an unpadded batch would still be causal.

The config flag is saved in ``config.json`` but the per-layer flag is not (it is rebuilt from the
class on load), so anything reloading an encoder must call :func:`enable_bidirectional` again;
:func:`load_bidirectional` does that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monGARS.mlops.errors import MongarsError

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
SUPPORTED_ATTENTION = ("eager", "sdpa")


def check_supported(config: Any, field: str = "base_model") -> None:
    """Refuse a model family whose attention this module has not been verified on."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise MongarsError(
            f"{field}: model_type {model_type!r} is not supported by the llm2vec stage; "
            f"use a {', '.join(SUPPORTED_MODEL_TYPES)} model"
        )


def _attention_modules(model: Any) -> list[Any]:
    """Every self-attention module of the model (the ones carrying an ``is_causal`` flag)."""
    found = [
        module
        for name, module in model.named_modules()
        if name.endswith("self_attn") and hasattr(module, "is_causal")
    ]
    if not found:
        raise MongarsError(
            f"model: no self_attn modules with an is_causal flag in {type(model).__name__}; "
            "this transformers version lays models out differently than expected"
        )
    return found


def enable_bidirectional(model: Any) -> Any:
    """Switch a Llama/Mistral/Qwen2 model (bare, ``*ForCausalLM`` or PEFT-wrapped) in place."""
    check_supported(model.config, "model")
    implementation = getattr(model.config, "_attn_implementation", None)
    if implementation not in SUPPORTED_ATTENTION:
        raise MongarsError(
            f"attn_implementation: {implementation!r} is not verified bidirectional; "
            f"load the model with one of {', '.join(SUPPORTED_ATTENTION)}"
        )
    model.config.is_causal = False
    for module in _attention_modules(model):
        module.is_causal = False
        inner_config = getattr(module, "config", None)
        if inner_config is not None:
            inner_config.is_causal = False
    return model


def is_bidirectional(model: Any) -> bool:
    """True when both the config and every attention layer are switched off causal."""
    if getattr(model.config, "is_causal", True):
        return False
    return all(not module.is_causal for module in _attention_modules(model))


def load_bidirectional(
    model_dir: str | Path,
    *,
    causal_lm: bool = False,
    dtype: Any = None,
    device: str | None = None,
    attn_implementation: str = "sdpa",
) -> Any:
    """Load a saved encoder (or any supported model) with bidirectional attention re-applied.

    ``causal_lm=True`` loads ``AutoModelForCausalLM`` (keeps ``lm_head``), otherwise ``AutoModel``
    (the bare transformer, what embeddings need).
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from monGARS.mlops.base_model import check_model_folder

    folder = Path(model_dir)
    check_model_folder(folder, "encoder")
    config = AutoConfig.from_pretrained(str(folder))
    check_supported(config, "encoder")
    loader = AutoModelForCausalLM if causal_lm else AutoModel
    model = loader.from_pretrained(
        str(folder),
        dtype=dtype or torch.float32,
        attn_implementation=attn_implementation,
    )
    enable_bidirectional(model)
    if device:
        model = model.to(device)
    model.eval()
    return model
