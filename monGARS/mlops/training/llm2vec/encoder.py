"""The llm2vec encoder as a library: load the stage's output and embed texts.

Embeddings are the mean of the last hidden states over the attention mask, L2-normalised, from the
bare transformer with bidirectional attention: exactly what the stage evaluated and what the GGUF
export runs in llama.cpp (non-causal attention, mean pooling).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monGARS.mlops.errors import MongarsError

ENCODER_SUBDIR = "encoder"
ENCODER_JSON = "encoder.json"


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """Average of ``hidden`` [batch, seq, dim] over positions where ``attention_mask`` is 1."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    total = (hidden * mask).sum(dim=1)
    count = mask.sum(dim=1).clamp(min=1.0)
    return total / count


def encode_batch(backbone: Any, tokenizer: Any, texts: Sequence[str], max_length: int) -> Any:
    """Mean-pooled (not normalised) embeddings of one batch, gradients flowing when enabled."""
    device = next(backbone.parameters()).device
    batch = tokenizer(
        list(texts),
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    ).to(device)
    hidden = backbone(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    return mean_pool(hidden.float(), batch["attention_mask"])


def embed_texts(
    backbone: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 16,
) -> np.ndarray:
    """L2-normalised embeddings [len(texts), hidden] with dropout off and no gradients."""
    import torch

    if isinstance(texts, str):
        raise MongarsError("texts: expected a list of strings, got one string; wrap it in a list")
    was_training = backbone.training
    backbone.eval()
    chunks = []
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                pooled = encode_batch(
                    backbone, tokenizer, texts[start : start + batch_size], max_length
                )
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
    finally:
        backbone.train(was_training)
    if not chunks:
        hidden = getattr(backbone.config, "hidden_size", 0)
        return np.zeros((0, hidden), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32)


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Right padding (mean pooling and RoPE positions assume it) and a pad token."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


class Encoder:
    """A loaded llm2vec encoder: ``embed(texts)`` gives L2-normalised mean-pooled embeddings."""

    def __init__(self, model: Any, tokenizer: Any, settings: dict[str, Any]) -> None:
        self.model = model
        self.tokenizer = prepare_tokenizer(tokenizer)
        self.settings = dict(settings)
        self.max_length = int(settings.get("max_length", 512))
        if settings.get("pooling", "mean") != "mean":
            raise MongarsError(
                f"encoder.json: pooling {settings.get('pooling')!r} is not supported; use 'mean'"
            )

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        """Embeddings [len(texts), dimension], float32, each row of unit length."""
        return embed_texts(
            self.model, self.tokenizer, texts, max_length=self.max_length, batch_size=batch_size
        )


def _locate(path: Path) -> tuple[Path, dict[str, Any]]:
    """The model folder and the encoder settings, from the stage output or its encoder/ folder."""
    for settings_path, model_dir in (
        (path / ENCODER_JSON, path / ENCODER_SUBDIR),
        (path.parent / ENCODER_JSON, path),
    ):
        if settings_path.is_file() and (model_dir / "config.json").is_file():
            try:
                settings = json.loads(settings_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise MongarsError(
                    f"encoder: {settings_path} is not valid JSON ({error})"
                ) from None
            return model_dir, settings
    raise MongarsError(
        f"encoder: {path} is neither an llm2vec output folder (encoder/ + encoder.json) nor its "
        "encoder/ folder; pass the llm2vec stage's output"
    )


def load_encoder(path: str | Path, *, device: str | None = None, dtype: Any = None) -> Encoder:
    """Load the llm2vec stage output (or its ``encoder/`` folder) with bidirectional attention."""
    from monGARS.mlops.modeling import load_tokenizer, pick_device
    from monGARS.mlops.training.llm2vec.bidirectional import load_bidirectional

    model_dir, settings = _locate(Path(path))
    model = load_bidirectional(model_dir, dtype=dtype, device=device or pick_device())
    return Encoder(model, load_tokenizer(model_dir), settings)


def embed(path: str | Path, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
    """One-shot helper: load the encoder at ``path`` and embed ``texts``."""
    return load_encoder(path).embed(texts, batch_size=batch_size)
