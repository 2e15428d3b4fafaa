"""What the Hugging Face models say about the sample texts: the yardstick GGUF files are held to.

Computed once per exported model (not per GGUF file), in float32 on CPU.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from monGARS.mlops.errors import MongarsError

CHAT_PROBE = [
    {"role": "system", "content": "Tu es monGARS, un assistant francophone qui écrit du code."},
    {"role": "user", "content": "Écris une fonction Python qui inverse une chaîne."},
]


@dataclasses.dataclass
class ChatReference:
    """Token ids and next-token logits of the merged HF chat model."""

    texts: list[str]
    sample_ids: list[list[int]]  # each sample text, tokenised with special tokens (BOS) added
    sample_logits: list[np.ndarray]  # [tokens, vocab] float32 per sample
    chat_text: str | None  # the probe conversation rendered by the chat template
    chat_ids: list[int] | None  # its ids, special tokens parsed, nothing added
    chat_next_token: int | None  # HF greedy next token after the chat prompt
    chat_next_margin: float = 0.0  # its lead over the runner-up logit


@dataclasses.dataclass
class EncoderReference:
    """Token ids, pooled spans and embeddings of the HF encoder, documents then queries.

    A document is read alone, a query after ``query_instruction``; each embedding pools the
    text's own tokens (``spans``, [start, stop) of ``sample_ids``), never BOS or the instruction,
    with the rule of ``monGARS.mlops.training.llm2vec.instruction``.
    """

    texts: list[str]  # documents
    sample_ids: list[list[int]]  # model input per document then per query, cut at max_length
    embeddings: np.ndarray  # [documents + queries, hidden]
    pooling: str
    causal: bool
    queries: list[str] = dataclasses.field(default_factory=list)
    query_instruction: str = ""
    max_length: int = 512
    spans: list[tuple[int, int]] = dataclasses.field(default_factory=list)

    def inputs(self) -> list[tuple[str | None, str]]:
        """(instruction, text) of each sample, in ``sample_ids`` order."""
        return [(None, text) for text in self.texts] + [
            (self.query_instruction, query) for query in self.queries
        ]


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def chat_reference(model_dir: str | Path, texts: tuple[str, ...] | list[str]) -> ChatReference:
    """Logits at every position of each sample text, and the chat-template probe."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = Path(model_dir)
    tokenizer = _load_tokenizer(folder)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    model.eval()
    sample_ids = [tokenizer(text, add_special_tokens=True)["input_ids"] for text in texts]
    logits: list[np.ndarray] = []
    with torch.no_grad():
        for ids in sample_ids:
            logits.append(model(torch.tensor([ids])).logits[0].float().numpy())
        chat_text = chat_ids = next_token = None
        margin = 0.0
        if getattr(tokenizer, "chat_template", None):
            chat_text = tokenizer.apply_chat_template(
                CHAT_PROBE, tokenize=False, add_generation_prompt=True
            )
            chat_ids = tokenizer(chat_text, add_special_tokens=False)["input_ids"]
            next_logits = model(torch.tensor([chat_ids])).logits[0, -1]
            top2 = torch.topk(next_logits, 2).values
            next_token = int(torch.argmax(next_logits))
            margin = float(top2[0] - top2[1])
    return ChatReference(list(texts), sample_ids, logits, chat_text, chat_ids, next_token, margin)


def set_bidirectional(model: Any) -> None:
    """transformers 5 reads ``is_causal`` from the config and from every attention module."""
    model.config.is_causal = False
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False


def pool(hidden: np.ndarray, pooling: str) -> np.ndarray:
    """Pool one sequence's pooled-span hidden states ([tokens, hidden])."""
    if pooling == "mean":
        return hidden.mean(axis=0)
    if pooling == "cls":
        return hidden[0]
    if pooling == "last":
        return hidden[-1]
    raise MongarsError(f"export: pooling {pooling!r} is not supported; use mean, cls or last")


def encoder_reference(
    encoder_dir: str | Path,
    texts: tuple[str, ...] | list[str],
    pooling: str,
    *,
    queries: tuple[str, ...] | list[str] = (),
    query_instruction: str = "",
    max_length: int = 512,
) -> EncoderReference:
    """Pooled final-layer embeddings of each document and query (one unpadded sequence each)."""
    import json

    import torch
    from transformers import AutoModel

    from monGARS.mlops.training.llm2vec.instruction import token_spans

    folder = Path(encoder_dir)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    causal = bool(config.get("is_causal", True))
    tokenizer = _load_tokenizer(folder)
    model = AutoModel.from_pretrained(str(folder), dtype=torch.float32)
    if not causal:
        set_bidirectional(model)
    model.eval()

    def tokenize(batch: list[str], special: bool) -> list[list[int]]:
        return list(tokenizer(batch, add_special_tokens=special)["input_ids"])

    rows = token_spans(tokenize, list(texts), None, max_length)
    rows += token_spans(tokenize, list(queries), query_instruction, max_length)
    vectors = []
    with torch.no_grad():
        for ids, (start, stop) in rows:
            output = model(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            )
            hidden = output.last_hidden_state[0].float().numpy()
            vectors.append(pool(hidden[start:stop], pooling))
    return EncoderReference(
        texts=list(texts),
        sample_ids=[ids for ids, _ in rows],
        embeddings=np.stack(vectors),
        pooling=pooling,
        causal=causal,
        queries=list(queries),
        query_instruction=query_instruction,
        max_length=max_length,
        spans=[span for _, span in rows],
    )
