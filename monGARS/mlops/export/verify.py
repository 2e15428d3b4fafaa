"""Prove a GGUF file behaves like the HF model it came from, by running it in llama.cpp.

Each check records its figures; a file passes only if every check does. llama.cpp runs with an f32
KV cache (``type_k = type_v = 0``) so that f16 files match HF float32 logits to ~1e-3 relative.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from monGARS.mlops.export.reference import ChatReference, EncoderReference

GGML_TYPE_F32 = 0
POOLING_CODES = {"mean": 1, "cls": 2, "last": 3}


def _threads() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


@contextlib.contextmanager
def open_llama(path: str | Path, **kwargs: Any) -> Iterator[Any]:
    """A llama_cpp.Llama closed deterministically (its __del__ fails at interpreter exit)."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(path),
        verbose=False,
        n_threads=_threads(),
        type_k=GGML_TYPE_F32,
        type_v=GGML_TYPE_F32,
        **kwargs,
    )
    try:
        yield llm
    finally:
        llm.close()


def _round_up(value: int, step: int = 64) -> int:
    """Context sizes in whole steps: only as large as the probes need, to keep checks fast."""
    return ((value + step - 1) // step) * step


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / denominator) if denominator else 0.0


def _first_mismatch(expected: list[int], got: list[int]) -> int:
    for index, (left, right) in enumerate(zip(expected, got, strict=False)):
        if left != right:
            return index
    return min(len(expected), len(got))


def verify_chat_file(
    path: str | Path,
    reference: ChatReference,
    *,
    min_cosine: float,
    max_rel_diff: float,
    generate_tokens: int,
    check_special_text: bool,
    exact_next_token: bool,
) -> dict[str, Any]:
    """Load, tokenise, compare logits, generate; return figures and ``problems`` (empty = pass)."""
    problems: list[str] = []
    longest = max(len(ids) for ids in [*reference.sample_ids, reference.chat_ids or []])
    context = _round_up(longest + generate_tokens + 8)
    with open_llama(path, n_ctx=context, n_batch=context, logits_all=True) as llm:
        token_mismatches = 0
        for index, (text, expected) in enumerate(
            zip(reference.texts, reference.sample_ids, strict=True)
        ):
            got = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
            if got != expected:
                token_mismatches += 1
                at = _first_mismatch(expected, got)
                problems.append(
                    f"tokenisation of sample {index} differs from HF at token {at} "
                    f"(HF {expected[at : at + 3]}, llama.cpp {got[at : at + 3]})"
                )
        if (
            check_special_text
            and reference.chat_text is not None
            and reference.chat_ids is not None
        ):
            got = llm.tokenize(reference.chat_text.encode("utf-8"), add_bos=False, special=True)
            if got != reference.chat_ids:
                token_mismatches += 1
                at = _first_mismatch(reference.chat_ids, got)
                problems.append(f"tokenisation of the chat prompt differs from HF at token {at}")

        max_abs = 0.0
        scale = 0.0
        cosines: list[float] = []
        agree = total = 0
        for ids, expected_logits in zip(reference.sample_ids, reference.sample_logits, strict=True):
            llm.reset()
            llm.eval(ids)
            got_logits = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
            diff = np.abs(got_logits - expected_logits)
            max_abs = max(max_abs, float(diff.max()))
            scale = max(scale, float(np.abs(expected_logits).max()))
            cosines.extend(_cosine(g, e) for g, e in zip(got_logits, expected_logits, strict=True))
            agree += int((got_logits.argmax(-1) == expected_logits.argmax(-1)).sum())
            total += len(ids)
        rel = max_abs / scale if scale else max_abs
        min_cos = min(cosines)
        if min_cos < min_cosine:
            problems.append(f"logit cosine {min_cos:.6f} < bound {min_cosine}")
        if rel > max_rel_diff:
            problems.append(f"logit relative max diff {rel:.3g} > bound {max_rel_diff}")

        generated, next_token = _generate(llm, reference, generate_tokens)
        if not generated["tokens"]:
            problems.append("the chat model generated no token")
        # Only a decisive HF choice (top-2 gap above twice the measured logit error) must match.
        decisive = reference.chat_next_margin > 2 * max_abs
        if (
            exact_next_token
            and decisive
            and reference.chat_next_token is not None
            and next_token is not None
            and next_token != reference.chat_next_token
        ):
            problems.append(
                f"greedy next token after the chat prompt is {next_token}, "
                f"HF says {reference.chat_next_token}"
            )
    return {
        "kind": "chat",
        "loaded": True,
        "token_mismatches": token_mismatches,
        "samples": len(reference.sample_ids),
        "logits_max_abs_diff": max_abs,
        "logits_rel_diff": rel,
        "logits_min_cosine": min_cos,
        "top1_agreement": agree / total if total else 0.0,
        "bounds": {"min_cosine": min_cosine, "max_rel_diff": max_rel_diff},
        "generated_tokens": len(generated["tokens"]),
        "generated_text": generated["text"],
        "problems": problems,
        "passed": not problems,
    }


def _generate(llm: Any, reference: ChatReference, count: int) -> tuple[dict[str, Any], int | None]:
    """Greedy generation after the chat prompt (or BOS) through llama.cpp's own sampler."""
    import llama_cpp

    prompt = reference.chat_ids or reference.sample_ids[0][:1]
    llm.reset()
    tokens: list[int] = []
    for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        tokens.append(int(token))
        if len(tokens) >= count or llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            break
    text = llm.detokenize(tokens).decode("utf-8", errors="replace")
    return {"tokens": tokens, "text": text}, (tokens[0] if tokens else None)


def verify_encoder_file(
    path: str | Path, reference: EncoderReference, *, min_cosine: float
) -> dict[str, Any]:
    """Pooled llama.cpp embeddings vs the HF encoder's, per sample text."""
    import llama_cpp

    problems: list[str] = []
    longest = max(len(ids) for ids in reference.sample_ids)
    context = _round_up(longest + 8)
    attention = (
        llama_cpp.LLAMA_ATTENTION_TYPE_CAUSAL
        if reference.causal
        else llama_cpp.LLAMA_ATTENTION_TYPE_NON_CAUSAL
    )
    with open_llama(
        path,
        n_ctx=context,
        n_batch=context,
        n_ubatch=context,
        embedding=True,
        pooling_type=POOLING_CODES[reference.pooling],
        attention_type=attention,
    ) as llm:
        token_mismatches = 0
        for index, (text, expected) in enumerate(
            zip(reference.texts, reference.sample_ids, strict=True)
        ):
            got = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
            if got != expected:
                token_mismatches += 1
                problems.append(f"tokenisation of sample {index} differs from HF")
        cosines = []
        for ids, expected in zip(reference.sample_ids, reference.embeddings, strict=True):
            vector = np.asarray(_embed_ids(llm, ids), dtype=np.float32)
            cosines.append(_cosine(vector, expected))
    min_cos = min(cosines)
    if min_cos < min_cosine:
        problems.append(f"embedding cosine {min_cos:.6f} < bound {min_cosine}")
    return {
        "kind": "encoder",
        "loaded": True,
        "token_mismatches": token_mismatches,
        "samples": len(reference.sample_ids),
        "embedding_min_cosine": min_cos,
        "embedding_mean_cosine": float(np.mean(cosines)),
        "pooling": reference.pooling,
        "causal": reference.causal,
        "bounds": {"min_cosine": min_cosine},
        "problems": problems,
        "passed": not problems,
    }


def _embed_ids(llm: Any, ids: list[int]) -> list[float]:
    """One sequence through llama.cpp's pooled-embedding path, from token ids (no re-tokenising)."""
    import llama_cpp

    llm._ctx.kv_cache_clear()
    batch = llm._batch
    batch.reset()
    batch.add_sequence(ids, 0, True)
    llm._ctx.decode(batch)
    pointer = llama_cpp.llama_get_embeddings_seq(llm._ctx.ctx, 0)
    vector = pointer[: llm.n_embd()]
    batch.reset()
    return list(vector)
