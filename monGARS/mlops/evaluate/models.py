"""Score a chat model on held-out items: assistant-token NLL and greedy answers.

Two back ends share one interface so every figure is measured the same way on every model:
``GgufChat`` runs a GGUF file through llama.cpp (the file a user serves), ``HfChat`` the merged
Hugging Face folder it was converted from. NLL is the mean negative log-likelihood of the
reference's assistant tokens (the positions SFT trains on, ``chat_data.tokenize_chat``), given
everything before them; perplexity is its exponential. llama.cpp runs with an f32 KV cache and
every position's logits (``logits_all``), as the export verification does (``export/verify.py``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from monGARS.mlops.evaluate.items import EvalItem, scored_positions


class ChatScorer(Protocol):
    def token_nll(self, item: EvalItem) -> list[float]: ...

    def greedy(self, item: EvalItem, max_new_tokens: int, stop_ids: Sequence[int]) -> list[int]: ...

    def close(self) -> None: ...


def _log_softmax_at(logits: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """log p(target) of each row, computed in float64 so flat logits lose nothing."""
    rows = np.asarray(logits, dtype=np.float64)
    top = rows.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(rows - top).sum(axis=1))
    return rows[np.arange(len(targets)), list(targets)] - log_norm


class GgufChat:
    """A GGUF chat file in llama.cpp, sized for the items it will see."""

    def __init__(self, path: str | Path, n_ctx: int) -> None:
        from monGARS.mlops.export.verify import open_llama

        context = ((n_ctx + 63) // 64) * 64
        self.path = Path(path)
        self._stack = contextlib.ExitStack()
        self._llm = self._stack.enter_context(
            open_llama(path, n_ctx=context, n_batch=context, logits_all=True)
        )

    def token_nll(self, item: EvalItem) -> list[float]:
        positions = scored_positions(item)
        self._llm.reset()
        self._llm.eval(item.input_ids)
        logits = np.asarray(self._llm.scores[: len(item.input_ids)], dtype=np.float32)
        rows = logits[[t - 1 for t in positions]]
        return (-_log_softmax_at(rows, [item.input_ids[t] for t in positions])).tolist()

    def greedy(self, item: EvalItem, max_new_tokens: int, stop_ids: Sequence[int]) -> list[int]:
        import llama_cpp

        tokens: list[int] = []
        room = self._llm.n_ctx() - len(item.prompt_ids)
        if room <= 0:
            return tokens
        vocab = self._llm._model.vocab
        for token in self._llm.generate(item.prompt_ids, temp=0.0, top_k=1, reset=True):
            if token in stop_ids or llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            tokens.append(int(token))
            if len(tokens) >= min(max_new_tokens, room):
                break
        return tokens

    def decode(self, tokens: Sequence[int]) -> str:
        """Text of generated ids, special tokens left out (llama.cpp's detokenizer)."""
        return self._llm.detokenize(list(tokens)).decode("utf-8", errors="replace").strip()

    def close(self) -> None:
        self._stack.close()


def gguf_embedder(
    path: str | Path, *, pooling: str, causal: bool, n_ctx: int
) -> tuple[Callable[[list[str], str | None], np.ndarray], Callable[[], None]]:
    """(embed(texts, instruction) -> [texts, hidden], close) for a GGUF file as an encoder.

    Texts are pooled the way the llm2vec stage and ``Bundle.embed`` pool them: the text's own
    tokens, never BOS or the query instruction (``monGARS.mlops.export.verify.embed_span``). The
    tuned module's encoder runs as it was trained (bidirectional, its pooling); the base model,
    which has no encoder, is embedded as a causal model with mean pooling — the same starting
    point the llm2vec stage measures as "before".
    """
    from monGARS.mlops.export.verify import embed_span, llama_token_spans, open_encoder

    llm = open_encoder(path, n_ctx, causal=causal)

    def embed(texts: list[str], instruction: str | None = None) -> np.ndarray:
        spans = llama_token_spans(llm, texts, instruction, n_ctx)
        vectors = [embed_span(llm, ids, span, pooling) for ids, span in spans]
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    return embed, llm.close


class HfChat:
    """The merged Hugging Face chat model, in float32 on CPU (or the GPU when there is one)."""

    def __init__(self, model_dir: str | Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        from monGARS.mlops.modeling import pick_device

        self._torch = torch
        self.device = pick_device()
        self._model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        self._model.to(self.device).eval()

    def token_nll(self, item: EvalItem) -> list[float]:
        positions = scored_positions(item)
        with self._torch.no_grad():
            ids = self._torch.tensor([item.input_ids], device=self.device)
            logits = self._model(input_ids=ids).logits[0].float().cpu().numpy()
        rows = logits[[t - 1 for t in positions]]
        return (-_log_softmax_at(rows, [item.input_ids[t] for t in positions])).tolist()

    def greedy(self, item: EvalItem, max_new_tokens: int, stop_ids: Sequence[int]) -> list[int]:
        with self._torch.no_grad():
            ids = self._torch.tensor([item.prompt_ids], device=self.device)
            out = self._model.generate(
                input_ids=ids,
                attention_mask=self._torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=list(stop_ids) or None,
                pad_token_id=stop_ids[0] if stop_ids else 0,
            )
        tokens = out[0, len(item.prompt_ids) :].tolist()
        for index, token in enumerate(tokens):
            if token in stop_ids:
                return tokens[:index]
        return tokens

    def close(self) -> None:
        self._model = None


def score_model(
    scorer: ChatScorer,
    items: Sequence[EvalItem],
    decode: Callable[[Sequence[int]], str],
    *,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    answer_limit: int | None = None,
) -> dict[str, Any]:
    """NLL, perplexity and greedy answers (ids and text) of one model on ``items``.

    Every model's answers are decoded by the same kind of detokenizer (llama.cpp's, from a GGUF
    file of the same vocabulary), so text scores differ only where the generated ids do. With
    ``answer_limit`` only the first items get an answer (the NLL still covers them all).
    """
    total = 0.0
    count = 0
    per_item: list[float] = []
    answers: list[str] = []
    answer_ids: list[list[int]] = []
    for index, item in enumerate(items):
        nll = scorer.token_nll(item)
        total += float(np.sum(nll))
        count += len(nll)
        per_item.append(float(np.mean(nll)) if nll else float("nan"))
        if answer_limit is not None and index >= answer_limit:
            continue
        generated = scorer.greedy(item, max_new_tokens, stop_ids)
        answer_ids.append(generated)
        answers.append(decode(generated))
    mean = total / count if count else float("nan")
    return {
        "assistant_nll": mean,
        "perplexity": math.exp(mean) if math.isfinite(mean) and mean < 700 else float("inf"),
        "assistant_tokens": count,
        "item_nll": per_item,
        "answers": answers,
        "answer_ids": answer_ids,
    }
