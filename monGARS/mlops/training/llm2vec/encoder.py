"""The llm2vec encoder as a library: load the stage's output and embed documents and queries.

Embeddings are the mean of the last hidden states over the text's own tokens (not BOS, not a query
instruction; ``instruction.py`` holds the rule, upstream LLM2Vec's), L2-normalised, from the bare
transformer with bidirectional attention: what the stage trained and evaluated, and what the GGUF
export's verification and ``Bundle.embed`` / ``Bundle.embed_queries`` compute from llama.cpp's
per-token embeddings. Queries are read after the encoder's query instruction (``encoder.json``
``query_instruction``); documents have none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.llm2vec.instruction import token_spans

ENCODER_SUBDIR = "encoder"
ENCODER_JSON = "encoder.json"


def mean_pool(hidden: Any, pool_mask: Any) -> Any:
    """Average of ``hidden`` [batch, seq, dim] over positions where ``pool_mask`` is 1."""
    mask = pool_mask.to(hidden.dtype).unsqueeze(-1)
    total = (hidden * mask).sum(dim=1)
    count = mask.sum(dim=1).clamp(min=1.0)
    return total / count


def tokenize_for_pooling(
    tokenizer: Any, texts: Sequence[str], max_length: int, instruction: str | None = None
) -> tuple[Any, Any, Any]:
    """(input_ids, attention_mask, pool_mask), right-padded tensors [batch, seq].

    The input is ``instructed_text(instruction, text)`` with special tokens, cut at
    ``max_length``; ``pool_mask`` is 1 on the text's own tokens only (see ``instruction.py``).
    """
    import torch

    def tokenize(batch: list[str], special: bool) -> list[list[int]]:
        return list(tokenizer(batch, add_special_tokens=special)["input_ids"])

    rows = token_spans(tokenize, texts, instruction, max_length)
    width = max(len(ids) for ids, _ in rows)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    pool = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (ids, (start, stop)) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[row, : len(ids)] = 1
        pool[row, start:stop] = 1
    return input_ids, attention, pool


def encode_batch(
    backbone: Any,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    instruction: str | None = None,
) -> Any:
    """Mean-pooled (not normalised) embeddings of one batch, gradients flowing when enabled."""
    device = next(backbone.parameters()).device
    input_ids, attention, pool = tokenize_for_pooling(tokenizer, texts, max_length, instruction)
    hidden = backbone(
        input_ids=input_ids.to(device), attention_mask=attention.to(device)
    ).last_hidden_state
    return mean_pool(hidden.float(), pool.to(device))


def embed_texts(
    backbone: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 16,
    instruction: str | None = None,
) -> np.ndarray:
    """L2-normalised embeddings [len(texts), hidden] with dropout off and no gradients.

    ``instruction`` (queries) is attended to and left out of the average; None for documents.
    """
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
                    backbone, tokenizer, texts[start : start + batch_size], max_length, instruction
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
    """A loaded llm2vec encoder: ``embed(documents)`` and ``embed_queries(queries)`` give
    L2-normalised mean-pooled embeddings; queries are read after the query instruction."""

    def __init__(self, model: Any, tokenizer: Any, settings: dict[str, Any]) -> None:
        self.model = model
        self.tokenizer = prepare_tokenizer(tokenizer)
        self.settings = dict(settings)
        self.max_length = int(settings.get("max_length", 512))
        self.query_instruction = query_instruction_of(settings)
        if settings.get("pooling", "mean") != "mean":
            raise MongarsError(
                f"encoder.json: pooling {settings.get('pooling')!r} is not supported; use 'mean'"
            )

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        """Document embeddings [len(texts), dimension], float32, each row of unit length."""
        return embed_texts(
            self.model, self.tokenizer, texts, max_length=self.max_length, batch_size=batch_size
        )

    def embed_queries(self, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        """Query embeddings: each query read after the encoder's ``query_instruction``."""
        return embed_texts(
            self.model,
            self.tokenizer,
            texts,
            max_length=self.max_length,
            batch_size=batch_size,
            instruction=self.query_instruction,
        )


def query_instruction_of(settings: dict[str, Any]) -> str:
    """The query instruction an ``encoder.json`` declares; none when the file predates the key
    (such an encoder was trained and evaluated without one)."""
    value = settings.get("query_instruction", "")
    if not isinstance(value, str):
        raise MongarsError(
            f"encoder.json: query_instruction must be a string (got {value!r}); re-run llm2vec"
        )
    return value


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
    """One-shot helper: load the encoder at ``path`` and embed ``texts`` as documents."""
    return load_encoder(path).embed(texts, batch_size=batch_size)
