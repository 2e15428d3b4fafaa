"""Prove a GGUF file behaves like the HF model it came from, by running it in llama.cpp.

Each check records its figures; a file passes only if every check does. llama.cpp runs with an f32
KV cache (``type_k = type_v = 0``) so that f16 files match HF float32 logits to ~1e-3 relative.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from monGARS.mlops.cpus import thread_budget
from monGARS.mlops.export.reference import ChatReference, EncoderReference

GGML_TYPE_F32 = 0


def _threads() -> int:
    return thread_budget()


@contextlib.contextmanager
def open_llama(path: str | Path, **kwargs: Any) -> Iterator[Any]:
    """A llama_cpp.Llama closed deterministically (its __del__ fails at interpreter exit)."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(path),
        verbose=False,
        n_threads=_threads(),
        n_threads_batch=_threads(),
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
        "top1_agreement": agree / total,
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
    for token in llm.generate(prompt, temp=0.0):  # temperature 0: llama.cpp's greedy sampler
        tokens.append(int(token))
        if len(tokens) >= count or llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            break
    text = llm.detokenize(tokens).decode("utf-8", errors="replace")
    return {"tokens": tokens, "text": text}, (tokens[0] if tokens else None)


def open_encoder(path: str | Path, n_ctx: int, *, causal: bool, **kwargs: Any) -> Any:
    """A llama.cpp encoder context that returns per-token embeddings (pooling NONE).

    LLM2Vec pools the text's own tokens only (not BOS, not a query instruction), which llama.cpp's
    built-in pooling cannot express, so pooling is done by :func:`embed_span` on the token rows.
    """
    import llama_cpp

    attention = llama_cpp.LLAMA_ATTENTION_TYPE_NON_CAUSAL
    if causal:
        attention = llama_cpp.LLAMA_ATTENTION_TYPE_CAUSAL
    return llama_cpp.Llama(
        model_path=str(path),
        embedding=True,
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,  # non-causal attention needs the whole sequence in one micro-batch
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE,
        attention_type=attention,
        verbose=False,
        **{"n_threads": _threads(), "n_threads_batch": _threads(), **kwargs},
    )


def llama_token_spans(
    llm: Any, texts: list[str], instruction: str | None, max_length: int
) -> list[tuple[list[int], tuple[int, int]]]:
    """Input ids and pooled span per text, from llama.cpp's own tokenizer (the HF rule)."""
    from monGARS.mlops.training.llm2vec.instruction import token_spans

    def tokenize(batch: list[str], special: bool) -> list[list[int]]:
        return [llm.tokenize(t.encode("utf-8"), add_bos=special, special=False) for t in batch]

    return token_spans(tokenize, texts, instruction, max_length)


def embed_span(llm: Any, ids: list[int], span: tuple[int, int], pooling: str) -> np.ndarray:
    """One sequence through llama.cpp, its per-token embeddings pooled over ``span``."""
    import llama_cpp

    from monGARS.mlops.export.reference import pool

    llm._ctx.kv_cache_clear()
    batch = llm._batch
    batch.reset()
    batch.add_sequence(ids, 0, True)  # every token an output: each one's embedding is read
    llm._ctx.decode(batch)
    width = llm.n_embd()
    pointer = llama_cpp.llama_get_embeddings(llm._ctx.ctx)
    rows = np.ctypeslib.as_array(pointer, shape=(len(ids) * width,)).reshape(len(ids), width)
    vector = pool(np.array(rows[span[0] : span[1]], dtype=np.float32), pooling)
    batch.reset()
    return vector


def verify_encoder_file(
    path: str | Path, reference: EncoderReference, *, min_cosine: float
) -> dict[str, Any]:
    """llama.cpp embeddings vs the HF encoder's, per document and per instructed query."""
    problems: list[str] = []
    longest = max(len(ids) for ids in reference.sample_ids)
    inputs = reference.inputs()
    llm = open_encoder(
        path,
        _round_up(longest + 8),
        causal=reference.causal,
        type_k=GGML_TYPE_F32,
        type_v=GGML_TYPE_F32,
    )
    try:
        token_mismatches = 0
        cosines = []
        for index, ((instruction, text), expected_ids, expected_span, expected) in enumerate(
            zip(inputs, reference.sample_ids, reference.spans, reference.embeddings, strict=True)
        ):
            [(ids, span)] = llama_token_spans(llm, [text], instruction, reference.max_length)
            kind = "query" if instruction is not None else "sample"
            if ids != expected_ids or span != tuple(expected_span):
                token_mismatches += 1
                problems.append(
                    f"tokenisation of {kind} {index} differs from HF (llama.cpp span {span}, "
                    f"HF {tuple(expected_span)})"
                )
            vector = embed_span(llm, expected_ids, tuple(expected_span), reference.pooling)
            cosines.append(_cosine(vector, expected))
    finally:
        llm.close()
    documents = len(reference.texts)
    min_cos = min(cosines)
    if min_cos < min_cosine:
        problems.append(f"embedding cosine {min_cos:.6f} < bound {min_cosine}")
    query_cosines = cosines[documents:]
    return {
        "kind": "encoder",
        "loaded": True,
        "token_mismatches": token_mismatches,
        "samples": documents,
        "queries": len(query_cosines),
        "query_instruction": reference.query_instruction,
        "embedding_min_cosine": min_cos,
        "embedding_mean_cosine": float(np.mean(cosines)),
        "query_min_cosine": min(query_cosines) if query_cosines else None,
        "pooling": reference.pooling,
        "pooled_tokens": "text only (BOS and query instruction attended to, not pooled)",
        "causal": reference.causal,
        "bounds": {"min_cosine": min_cosine},
        "problems": problems,
        "passed": not problems,
    }
