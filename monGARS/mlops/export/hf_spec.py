"""Read a Hugging Face model folder's config into the hyperparameters a GGUF file needs.

Only the families the writer really supports pass: Llama and Mistral (the ``llama`` GGUF
architecture) and Qwen2. Anything else is refused with a message pointing at ``export_cmd``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from monGARS.mlops.errors import MongarsError

# HF model_type -> GGUF architecture name (gguf.MODEL_ARCH member name).
SUPPORTED_MODEL_TYPES: dict[str, str] = {
    "llama": "LLAMA",
    "mistral": "LLAMA",
    "qwen2": "QWEN2",
}


def unsupported_message(model_type: str, folder: Path) -> str:
    supported = ", ".join(sorted(SUPPORTED_MODEL_TYPES))
    return (
        f"export: model_type {model_type!r} in {folder / 'config.json'} is not supported by the "
        f"built-in GGUF writer (supported: {supported}); set export_cmd (--export-cmd) to a "
        "converter command with {model_dir} and {gguf_path}"
    )


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The hyperparameters of one causal-LM folder, in the units GGUF metadata uses."""

    model_type: str
    arch: str  # gguf.MODEL_ARCH member name
    context_length: int
    embedding_length: int
    block_count: int
    feed_forward_length: int
    head_count: int
    head_count_kv: int
    head_dim: int
    rope_theta: float
    rms_norm_eps: float
    vocab_size: int
    tie_word_embeddings: bool
    is_causal: bool
    rope_scaling: dict[str, Any]
    attention_bias: bool
    mlp_bias: bool

    @property
    def permute_qk(self) -> bool:
        """llama.cpp's llama arch rotates interleaved pairs; HF Llama rotates halves."""
        return self.arch == "LLAMA"


def _rope(config: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """rope_theta and the scaling dict, from transformers 5 ``rope_parameters`` or 4.x fields."""
    params = config.get("rope_parameters")
    if isinstance(params, dict) and params:
        theta = float(params.get("rope_theta", config.get("rope_theta", 10000.0)))
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    else:
        theta = float(config.get("rope_theta", 10000.0))
        scaling = dict(config.get("rope_scaling") or {})
    kind = scaling.get("rope_type", scaling.get("type", "default")) or "default"
    scaling["rope_type"] = kind
    return theta, scaling


def read_model_spec(folder: str | Path) -> ModelSpec:
    """Parse ``config.json``; refuse unsupported architectures and rope variants clearly."""
    root = Path(folder)
    path = root / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MongarsError(
            f"export: {root} has no config.json; give a Hugging Face model folder"
        ) from None
    except (OSError, json.JSONDecodeError) as error:
        raise MongarsError(f"export: {path} cannot be read as JSON ({error})") from None
    model_type = str(config.get("model_type", ""))
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise MongarsError(unsupported_message(model_type or "<missing>", root))
    text = config.get("text_config")
    if isinstance(text, dict):  # multimodal wrappers keep the LM in text_config
        config = {**config, **text}
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    theta, scaling = _rope(config)
    if scaling["rope_type"] not in {"default", "linear", "llama3"}:
        raise MongarsError(
            f"export: rope scaling {scaling['rope_type']!r} in {path} is not supported by the "
            "built-in GGUF writer (supported: none, linear, llama3); set export_cmd (--export-cmd)"
        )
    arch = SUPPORTED_MODEL_TYPES[model_type]
    return ModelSpec(
        model_type=model_type,
        arch=arch,
        context_length=int(config.get("max_position_embeddings", 2048)),
        embedding_length=hidden,
        block_count=int(config["num_hidden_layers"]),
        feed_forward_length=int(config["intermediate_size"]),
        head_count=heads,
        head_count_kv=int(config.get("num_key_value_heads") or heads),
        head_dim=head_dim,
        rope_theta=theta,
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        vocab_size=int(config["vocab_size"]),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        is_causal=bool(config.get("is_causal", True)),
        rope_scaling=scaling,
        attention_bias=bool(config.get("attention_bias", arch == "QWEN2")),
        mlp_bias=bool(config.get("mlp_bias", False)),
    )
