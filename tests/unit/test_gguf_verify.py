"""llama.cpp verification's decisions: which check fails, at which bound, with which message.

The GGUF files are tiny Llamas written here with gguf's writer (byte-level vocabulary, random
weights: loading one in llama.cpp takes milliseconds), and each reference is what llama.cpp itself
computes for them through its public API, so a faithful file passes with zero difference; each
test then moves one thing (a token id, a logit, a bound, the causal flag) and checks that exactly
the matching check fails. No torch, no transformers: the file runs in a few seconds and is the
per-mutant test set of ``monGARS/mlops/export/verify.py`` (tests/mutation.toml). That verification
passes real exports and catches real defects is checked by the integration tests
(tests/integration/test_export_bundle.py, test_export_formats.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monGARS.mlops.export.reference import ChatReference, EncoderReference, pool
from monGARS.mlops.export.verify import (
    _round_up,
    _threads,
    embed_span,
    llama_token_spans,
    open_encoder,
    open_llama,
    verify_chat_file,
    verify_encoder_file,
)

llama_cpp = pytest.importorskip("llama_cpp")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """llama.cpp on one thread (``_threads`` is the thread budget, OMP_NUM_THREADS first): its
    threads wait for each other, which on a shared 2-core machine makes each call ~5x slower; the
    figures are the same. tests/unit/test_cpus.py checks the budget's rule."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


EMBED, HEADS, KV_HEADS, FFN, LAYERS = 64, 4, 2, 128, 2
SPECIALS = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"]
BOS, EOS = 0, 1
MERGES = ["Ġ l", "Ġl e", "e s", "o n", "Ġ d"]
TEXTS = ["Bonjour, les amis.", "Le code est dans le dossier."]
CHAT_TEXT = "<|im_start|>user\nSalut<|im_end|>\n<|im_start|>assistant\n"
QUERIES = ["Où est le code ?"]
INSTRUCTION = "Retrouve le passage"


def _byte_tokens() -> list[str]:
    """GPT-2's printable stand-in for each byte (printable Latin-1 as is, the rest from U+0100)."""
    kept = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    shifted = iter(range(0x100, 0x200))
    return [chr(b) if b in kept else chr(next(shifted)) for b in range(256)]


def write_tiny_gguf(
    path: Path, *, eos_id: int = EOS, causal: bool = True, pooling: int | None = None
) -> Path:
    """A 2-layer Llama (GQA) with a byte-level BPE vocabulary and ChatML specials; the weights
    depend on nothing but the fixed seed, so files that differ in metadata compute the same."""
    import gguf

    tokens = [*SPECIALS, *_byte_tokens(), *(merge.replace(" ", "") for merge in MERGES)]
    types = [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))
    head_dim = EMBED // HEADS
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("verify-test")
    writer.add_context_length(512)
    writer.add_embedding_length(EMBED)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(0)  # all F32
    if not causal:
        writer.add_causal_attention(False)
    if pooling is not None:
        writer.add_pooling_type(gguf.PoolingType(pooling))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(BOS)
    writer.add_eos_token_id(eos_id)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    rng = np.random.default_rng(7)

    def weights(*shape: int, scale: float = 0.3, offset: float = 0.0) -> np.ndarray:
        return (offset + rng.standard_normal(shape) * scale).astype(np.float32)

    writer.add_tensor("token_embd.weight", weights(len(tokens), EMBED, scale=1.0))
    for layer in range(LAYERS):
        block = f"blk.{layer}."
        writer.add_tensor(block + "attn_norm.weight", weights(EMBED, scale=0.1, offset=1.0))
        writer.add_tensor(block + "attn_q.weight", weights(HEADS * head_dim, EMBED))
        writer.add_tensor(block + "attn_k.weight", weights(KV_HEADS * head_dim, EMBED))
        writer.add_tensor(block + "attn_v.weight", weights(KV_HEADS * head_dim, EMBED))
        writer.add_tensor(block + "attn_output.weight", weights(EMBED, HEADS * head_dim))
        writer.add_tensor(block + "ffn_norm.weight", weights(EMBED, scale=0.1, offset=1.0))
        writer.add_tensor(block + "ffn_gate.weight", weights(FFN, EMBED))
        writer.add_tensor(block + "ffn_up.weight", weights(FFN, EMBED))
        writer.add_tensor(block + "ffn_down.weight", weights(EMBED, FFN))
    writer.add_tensor("output_norm.weight", weights(EMBED, scale=0.1, offset=1.0))
    writer.add_tensor("output.weight", weights(len(tokens), EMBED))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# ------------------------------------------------------------------ llama.cpp as the reference


def _llama(path: Path, **kwargs: Any) -> Any:
    return llama_cpp.Llama(
        model_path=str(path), verbose=False, n_threads=1, type_k=0, type_v=0, **kwargs
    )


def _logits(llm: Any, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.asarray(llm.scores[: len(ids)], dtype=np.float32).copy()


def _greedy(llm: Any, prompt: list[int], count: int) -> list[int]:
    """Argmax decoding, one eval per token (no sampler involved)."""
    context = list(prompt)
    produced: list[int] = []
    for _ in range(count):
        produced.append(int(_logits(llm, context)[-1].argmax()))
        context.append(produced[-1])
    return produced


@dataclasses.dataclass
class ChatFixture:
    path: Path
    reference: ChatReference
    greedy: list[int]  # llama.cpp's argmax continuation of the chat prompt
    greedy_from_bos: list[int]
    detokenize: Any


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatFixture]:
    path = write_tiny_gguf(tmp_path_factory.mktemp("verify") / "chat.gguf")
    llm = _llama(path, n_ctx=128, n_batch=128, logits_all=True)
    try:
        sample_ids = [llm.tokenize(t.encode(), add_bos=True, special=False) for t in TEXTS]
        chat_ids = llm.tokenize(CHAT_TEXT.encode(), add_bos=False, special=True)
        next_logits = _logits(llm, chat_ids)[-1]
        top2 = np.sort(next_logits)[-2:]
        reference = ChatReference(
            texts=list(TEXTS),
            sample_ids=sample_ids,
            sample_logits=[_logits(llm, ids) for ids in sample_ids],
            chat_text=CHAT_TEXT,
            chat_ids=chat_ids,
            chat_next_token=int(next_logits.argmax()),
            chat_next_margin=float(top2[1] - top2[0]),
        )
        fixture = ChatFixture(
            path,
            reference,
            _greedy(llm, chat_ids, 6),
            _greedy(llm, [BOS], 6),
            lambda ids: llm.detokenize(ids).decode("utf-8", errors="replace"),
        )
        yield fixture
    finally:
        llm.close()


def _check(path: Path, reference: ChatReference, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "min_cosine": 0.9999,
        "max_rel_diff": 1e-4,
        "generate_tokens": 4,
        "check_special_text": True,
        "exact_next_token": True,
    }
    return verify_chat_file(path=path, reference=reference, **(settings | overrides))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def _with_logits(reference: ChatReference, sample: int, logits: np.ndarray) -> ChatReference:
    changed = list(reference.sample_logits)
    changed[sample] = logits
    return dataclasses.replace(reference, sample_logits=changed)


# ----------------------------------------------------------------------------- chat: passing


def test_a_faithful_file_passes_with_its_figures(chat: ChatFixture) -> None:
    result = _check(chat.path, chat.reference, generate_tokens=5)
    assert result["problems"] == [] and result["passed"] is True, result["problems"]
    assert result["kind"] == "chat" and result["loaded"] is True
    assert result["token_mismatches"] == 0 and result["samples"] == len(TEXTS)
    # llama.cpp against itself with an f32 KV cache: the same numbers.
    assert result["logits_max_abs_diff"] < 1e-5 and result["logits_rel_diff"] < 1e-6, result
    assert result["logits_min_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert result["top1_agreement"] == 1.0
    assert result["bounds"] == {"min_cosine": 0.9999, "max_rel_diff": 1e-4}
    # Greedy generation after the chat prompt, exactly generate_tokens of them.
    assert result["generated_tokens"] == 5
    assert result["generated_text"] == chat.detokenize(chat.greedy[:5])


def test_without_a_chat_template_generation_starts_from_bos(chat: ChatFixture) -> None:
    """From the first sample's first token (BOS), also with a single sample."""
    reference = dataclasses.replace(
        chat.reference,
        texts=TEXTS[:1],
        sample_ids=chat.reference.sample_ids[:1],
        sample_logits=chat.reference.sample_logits[:1],
        chat_text=None,
        chat_ids=None,
        chat_next_token=None,
    )
    result = _check(chat.path, reference, generate_tokens=3)
    assert result["passed"], result["problems"]
    assert result["generated_text"] == chat.detokenize(chat.greedy_from_bos[:3])


def test_without_bos_or_chat_template_generation_starts_from_the_first_sample(
    chat: ChatFixture,
) -> None:
    """A tokenizer that adds no BOS (Qwen2's): the prompt is sample 0's first token, not another
    sample's (verification then reports the tokenisation difference; generation still runs)."""
    with open_llama(chat.path, n_ctx=128, logits_all=True) as llm:
        sample_ids = [llm.tokenize(t.encode(), add_bos=False, special=False) for t in TEXTS]
        logits = [_logits(llm, ids) for ids in sample_ids]
        expected = _greedy(llm, sample_ids[0][:1], 3)
    assert sample_ids[0][0] != sample_ids[1][0], "the samples must start differently"
    reference = ChatReference(
        texts=list(TEXTS),
        sample_ids=sample_ids,
        sample_logits=logits,
        chat_text=None,
        chat_ids=None,
        chat_next_token=None,
    )
    result = _check(chat.path, reference, generate_tokens=3)
    assert result["generated_text"] == chat.detokenize(expected)


def test_generation_stops_at_an_end_of_generation_token(chat: ChatFixture, tmp_path: Path) -> None:
    """The same weights with EOS set to the second greedy token: two tokens, then stop."""
    stop = chat.greedy[1]
    assert stop not in chat.greedy[:1], "the test needs a token the greedy run meets first at 2"
    path = write_tiny_gguf(tmp_path / "eos.gguf", eos_id=stop)
    result = _check(path, chat.reference, generate_tokens=5)
    assert result["generated_tokens"] == 2, "generation did not stop at the EOS token"


def test_the_llama_context_is_f32_kv_quiet_and_threaded(
    chat: ChatFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    with open_llama(chat.path, n_ctx=64) as llm:
        assert (llm.context_params.type_k, llm.context_params.type_v) == (0, 0), "KV not f32"
        assert llm.n_threads == llm.n_threads_batch == _threads() == 1
    assert capfd.readouterr().err == "", "llama.cpp logged while loading (verbose on)"


def test_every_llama_context_keeps_to_the_thread_budget(
    chat: ChatFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prompt batches too: llama-cpp-python's own default for n_threads_batch is every CPU of
    the machine, the node's count in a pod whatever its CPU limit."""
    from monGARS.mlops.export.verify import open_encoder

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _threads() == 3
    with open_llama(chat.path, n_ctx=64) as llm:
        assert (llm.n_threads, llm.n_threads_batch) == (3, 3)
    encoder = open_encoder(chat.path, 64, causal=False)
    try:
        assert (encoder.n_threads, encoder.n_threads_batch) == (3, 3)
    finally:
        encoder.close()


def test_context_sizes_round_up_to_whole_steps_of_64() -> None:
    assert [_round_up(v) for v in (1, 63, 64, 65, 128, 129)] == [64, 64, 64, 128, 128, 192]
    assert _round_up(10, step=8) == 16


def test_the_context_holds_the_longest_input_and_the_generated_tokens(chat: ChatFixture) -> None:
    """A chat prompt and generation just past llama.cpp's 256-token context step: a context sized
    without the generated tokens (or without the margin) would overflow mid-generation."""
    long_text = CHAT_TEXT + "x" * 230
    with open_llama(chat.path, n_ctx=512) as llm:
        long_ids = llm.tokenize(long_text.encode(), add_bos=False, special=True)
    generate = 260 - len(long_ids)
    assert 2 <= generate <= 16, len(long_ids)
    reference = dataclasses.replace(chat.reference, chat_text=long_text, chat_ids=long_ids)
    result = _check(chat.path, reference, generate_tokens=generate, exact_next_token=False)
    assert result["generated_tokens"] == generate, result["problems"]


class _Requested(Exception):
    """Raised by the stand-in for llama_cpp.Llama once it has recorded its arguments."""


def _llama_arguments(monkeypatch: pytest.MonkeyPatch, call: Any) -> dict[str, Any]:
    """The keyword arguments ``call`` constructs llama_cpp.Llama with (it is not loaded)."""
    seen: dict[str, Any] = {}

    def record(**kwargs: Any) -> None:
        seen.update(kwargs)
        raise _Requested

    monkeypatch.setattr(llama_cpp, "Llama", record)
    with pytest.raises(_Requested):
        call()
    return seen


@pytest.mark.parametrize(
    ("sample_lengths", "chat_length", "generate", "context"),
    [
        ((10, 20), 30, 26, 64),  # 30 + 26 + 8 spare = 64: one step
        ((10, 20), 30, 27, 128),  # one more token: the next step
        ((10, 40), 30, 16, 64),  # a sample longer than the chat prompt sets the size
        ((10, 41), 30, 16, 128),
        ((10, 20), None, 36, 64),  # no chat template: the samples alone
        ((10, 20), None, 37, 128),
    ],
)
def test_the_chat_context_is_the_longest_probe_and_generation_with_8_spare_in_64_steps(
    monkeypatch: pytest.MonkeyPatch,
    sample_lengths: tuple[int, ...],
    chat_length: int | None,
    generate: int,
    context: int,
) -> None:
    reference = ChatReference(
        texts=["t"] * len(sample_lengths),
        sample_ids=[[BOS] * n for n in sample_lengths],
        sample_logits=[np.zeros((n, 4), dtype=np.float32) for n in sample_lengths],
        chat_text=None if chat_length is None else "c",
        chat_ids=None if chat_length is None else [BOS] * chat_length,
        chat_next_token=None,
    )
    seen = _llama_arguments(
        monkeypatch, lambda: _check(Path("m.gguf"), reference, generate_tokens=generate)
    )
    assert (seen["n_ctx"], seen["n_batch"]) == (context, context), seen
    assert seen["logits_all"] is True and seen["model_path"] == "m.gguf"
    assert (seen["type_k"], seen["type_v"], seen["verbose"]) == (0, 0, False)


@pytest.mark.parametrize(("longest", "context"), [(56, 64), (57, 128)])
def test_the_encoder_context_holds_the_longest_input_in_one_micro_batch(
    monkeypatch: pytest.MonkeyPatch, longest: int, context: int
) -> None:
    reference = EncoderReference(
        texts=["a", "b"],
        sample_ids=[[BOS] * 3, [BOS] * longest],
        embeddings=np.zeros((2, EMBED), dtype=np.float32),
        pooling="mean",
        causal=False,
        spans=[(1, 3), (1, longest)],
    )
    seen = _llama_arguments(
        monkeypatch, lambda: verify_encoder_file(Path("e.gguf"), reference, min_cosine=0.99)
    )
    # Non-causal attention needs the whole sequence in one micro-batch (n_ubatch).
    assert (seen["n_ctx"], seen["n_batch"], seen["n_ubatch"]) == (context,) * 3, seen
    assert seen["embedding"] is True and seen["model_path"] == "e.gguf"
    assert seen["pooling_type"] == llama_cpp.LLAMA_POOLING_TYPE_NONE  # pooled by embed_span
    assert seen["attention_type"] == llama_cpp.LLAMA_ATTENTION_TYPE_NON_CAUSAL
    assert (seen["type_k"], seen["type_v"], seen["verbose"]) == (0, 0, False)
    assert seen["n_threads"] == _threads()


# ------------------------------------------------------------------------- chat: tokenisation


def test_a_sample_tokenised_differently_is_reported_at_the_first_differing_token(
    chat: ChatFixture,
) -> None:
    ids = list(chat.reference.sample_ids[1])
    changed = [*ids[:4], 200, *ids[5:]]
    with open_llama(chat.path, n_ctx=128, logits_all=True) as llm:
        logits = _logits(llm, changed)  # the reference stays coherent: only the ids differ
    sample_ids = [chat.reference.sample_ids[0], changed]
    reference = _with_logits(dataclasses.replace(chat.reference, sample_ids=sample_ids), 1, logits)
    result = _check(chat.path, reference)
    assert result["token_mismatches"] == 1 and not result["passed"]
    assert result["problems"] == [
        f"tokenisation of sample 1 differs from HF at token 4 "
        f"(HF {[200, *ids[5:7]]}, llama.cpp {ids[4:7]})"
    ]


def test_a_sample_that_is_a_prefix_differs_where_it_ends(chat: ChatFixture) -> None:
    ids = list(chat.reference.sample_ids[0])
    with open_llama(chat.path, n_ctx=128, logits_all=True) as llm:
        logits = _logits(llm, ids[:-2])
    sample_ids = [ids[:-2], chat.reference.sample_ids[1]]
    reference = _with_logits(dataclasses.replace(chat.reference, sample_ids=sample_ids), 0, logits)
    result = _check(chat.path, reference)
    at = len(ids) - 2
    assert result["problems"] == [
        f"tokenisation of sample 0 differs from HF at token {at} (HF [], llama.cpp {ids[at:]})"
    ]


def test_a_chat_prompt_tokenised_differently_is_reported_when_checked(chat: ChatFixture) -> None:
    ids = list(chat.reference.chat_ids or [])
    reference = dataclasses.replace(chat.reference, chat_ids=[*ids[:2], 9, *ids[3:]])
    result = _check(chat.path, reference, exact_next_token=False)
    assert result["problems"] == ["tokenisation of the chat prompt differs from HF at token 2"]
    assert result["token_mismatches"] == 1
    unchecked = _check(chat.path, reference, exact_next_token=False, check_special_text=False)
    assert unchecked["passed"] and unchecked["token_mismatches"] == 0, unchecked["problems"]
    no_text = dataclasses.replace(reference, chat_text=None)
    assert _check(chat.path, no_text, exact_next_token=False)["passed"]


def test_a_chat_prompt_with_a_matching_prefix_differs_where_the_shorter_ends(
    chat: ChatFixture,
) -> None:
    ids = list(chat.reference.chat_ids or [])
    reference = dataclasses.replace(chat.reference, chat_ids=[*ids, 9])
    result = _check(chat.path, reference, exact_next_token=False)
    assert result["problems"] == [
        f"tokenisation of the chat prompt differs from HF at token {len(ids)}"
    ]


# ------------------------------------------------------------------------------ chat: logits


def _nudged(chat: ChatFixture, sample: int, delta: float) -> tuple[ChatReference, float, float]:
    """The reference with one logit of ``sample`` moved by ``delta``; (reference, the
    relative max difference and the minimum row cosine that then hold)."""
    logits = chat.reference.sample_logits[sample].copy()
    logits[1, 5] += delta
    reference = _with_logits(chat.reference, sample, logits)
    scale = max(float(np.abs(x).max()) for x in reference.sample_logits)
    original = chat.reference.sample_logits[sample][1]
    cosine = float(
        np.dot(original, logits[1]) / np.linalg.norm(original) / np.linalg.norm(logits[1])
    )
    return reference, abs(delta) / scale, cosine


def test_logit_figures_are_the_max_difference_over_the_largest_reference_logit(
    chat: ChatFixture,
) -> None:
    reference, rel, cosine = _nudged(chat, 1, 3.0)
    result = _check(chat.path, reference, min_cosine=0.0, max_rel_diff=1.0)
    assert result["passed"], result["problems"]
    assert result["logits_max_abs_diff"] == pytest.approx(3.0, abs=1e-4)
    assert result["logits_rel_diff"] == pytest.approx(rel, rel=1e-4)
    assert result["logits_min_cosine"] == pytest.approx(cosine, abs=1e-6)


def test_a_logit_difference_over_the_bound_fails_and_one_at_it_passes(chat: ChatFixture) -> None:
    reference, _, _ = _nudged(chat, 0, -2.0)
    measured = _check(chat.path, reference, min_cosine=0.0, max_rel_diff=1.0)["logits_rel_diff"]
    at_bound = _check(chat.path, reference, min_cosine=0.0, max_rel_diff=measured)
    assert at_bound["passed"], at_bound["problems"]
    below = float(np.nextafter(measured, 0.0))
    over = _check(chat.path, reference, min_cosine=0.0, max_rel_diff=below)
    assert over["problems"] == [f"logit relative max diff {measured:.3g} > bound {below}"]


def test_a_logit_cosine_under_the_bound_fails_and_one_at_it_passes(chat: ChatFixture) -> None:
    reference, _, _ = _nudged(chat, 1, 40.0)
    measured = _check(chat.path, reference, min_cosine=0.0, max_rel_diff=1e9)["logits_min_cosine"]
    assert measured < 0.999
    at_bound = _check(chat.path, reference, min_cosine=measured, max_rel_diff=1e9)
    assert at_bound["passed"], at_bound["problems"]
    above = float(np.nextafter(measured, 1.0))
    under = _check(chat.path, reference, min_cosine=above, max_rel_diff=1e9)
    assert under["problems"] == [f"logit cosine {measured:.6f} < bound {above}"]


def test_top1_agreement_counts_positions_whose_argmax_differs(chat: ChatFixture) -> None:
    """Two positions moved: one to a lower token id than llama.cpp's choice, one to a higher."""
    logits = chat.reference.sample_logits[0].copy()
    for row, token in ((2, 0), (3, logits.shape[1] - 1)):
        assert int(logits[row].argmax()) != token
        logits[row, token] = float(logits[row].max()) + 5.0
    reference = _with_logits(chat.reference, 0, logits)
    result = _check(chat.path, reference, min_cosine=0.0, max_rel_diff=1e9)
    positions = sum(len(ids) for ids in reference.sample_ids)
    assert result["top1_agreement"] == pytest.approx((positions - 2) / positions)


def test_a_reference_whose_parts_disagree_in_length_is_refused(chat: ChatFixture) -> None:
    """One logit row for a many-token sample, or a text without ids, is an error, not a match
    on whatever overlaps."""
    one_row = _with_logits(chat.reference, 0, chat.reference.sample_logits[0][:1])
    with pytest.raises(ValueError, match="zip"):
        _check(chat.path, one_row, min_cosine=0.0, max_rel_diff=1e9)
    extra_text = dataclasses.replace(chat.reference, texts=[*TEXTS, "Encore un texte."])
    with pytest.raises(ValueError, match="zip"):
        _check(chat.path, extra_text)
    ids = chat.reference.sample_ids
    no_logits = dataclasses.replace(
        chat.reference, texts=[*TEXTS, TEXTS[0]], sample_ids=[*ids, ids[0]]
    )
    with pytest.raises(ValueError, match="zip"):
        _check(chat.path, no_logits)


def test_a_relative_difference_is_over_the_largest_reference_logit_even_below_1(
    chat: ChatFixture,
) -> None:
    """Small logits (here every reference logit scaled to under 0.01) are not divided by 1."""
    small = [x * (0.01 / float(np.abs(x).max())) for x in chat.reference.sample_logits]
    reference = dataclasses.replace(chat.reference, sample_logits=small)
    result = _check(chat.path, reference, min_cosine=0.0, max_rel_diff=1e9)
    largest = max(float(np.abs(x).max()) for x in chat.reference.sample_logits)
    assert result["logits_rel_diff"] == pytest.approx((largest - 0.01) / 0.01, rel=1e-4)


def test_a_reference_of_zero_logits_fails_on_cosine_without_dividing_by_zero(
    chat: ChatFixture,
) -> None:
    zeros = [np.zeros_like(x) for x in chat.reference.sample_logits]
    reference = dataclasses.replace(chat.reference, sample_logits=zeros)
    result = _check(chat.path, reference, max_rel_diff=1e9)
    largest = max(float(np.abs(x).max()) for x in chat.reference.sample_logits)
    assert result["logits_min_cosine"] == 0.0
    assert result["logits_rel_diff"] == pytest.approx(largest, rel=1e-5), "not the absolute diff"
    assert result["problems"] == ["logit cosine 0.000000 < bound 0.9999"]


# -------------------------------------------------------------------------- chat: next token


@pytest.mark.parametrize("offset", [1, -1])
def test_a_decisive_next_token_that_differs_fails(chat: ChatFixture, offset: int) -> None:
    """HF's token above or below llama.cpp's: any difference counts."""
    other = chat.greedy[0] + offset
    reference = dataclasses.replace(chat.reference, chat_next_token=other, chat_next_margin=1.0)
    result = _check(chat.path, reference)
    assert result["problems"] == [
        f"greedy next token after the chat prompt is {chat.greedy[0]}, HF says {other}"
    ]
    assert _check(chat.path, reference, exact_next_token=False)["passed"]
    unknown = dataclasses.replace(reference, chat_next_token=None)
    assert _check(chat.path, unknown)["passed"]


def test_a_next_token_is_decisive_only_above_twice_the_logit_error(chat: ChatFixture) -> None:
    """HF's top-2 gap must exceed 2x the measured max logit difference to be held to."""
    nudged, _, _ = _nudged(chat, 0, 0.25)
    other = (chat.greedy[0] + 1) % 100
    loose = {"min_cosine": 0.0, "max_rel_diff": 1e9}
    max_abs = _check(chat.path, nudged, **loose)["logits_max_abs_diff"]
    at_twice = dataclasses.replace(nudged, chat_next_token=other, chat_next_margin=2 * max_abs)
    assert _check(chat.path, at_twice, **loose)["passed"], "a gap of exactly 2x is not decisive"
    above = dataclasses.replace(at_twice, chat_next_margin=float(np.nextafter(2 * max_abs, 9.0)))
    assert not _check(chat.path, above, **loose)["passed"], "a gap above 2x is decisive"
    below = dataclasses.replace(at_twice, chat_next_margin=max_abs)
    assert _check(chat.path, below, **loose)["passed"], "a gap under 2x is not decisive"


# ----------------------------------------------------------------------------------- encoder


@dataclasses.dataclass
class EncoderFixture:
    path: Path
    reference: EncoderReference
    rows: list[np.ndarray]  # llama.cpp's per-token embeddings of each input (non-causal)
    causal_rows: list[np.ndarray]


def _rows(path: Path, texts: list[str], causal: bool) -> list[np.ndarray]:
    """Per-token embeddings through llama.cpp's public ``embed`` (pooling none)."""
    attention = 0 if causal else 1  # LLAMA_ATTENTION_TYPE_CAUSAL / NON_CAUSAL
    llm = _llama(
        path,
        embedding=True,
        n_ctx=128,
        n_batch=128,
        n_ubatch=128,
        pooling_type=0,
        attention_type=attention,
    )
    try:
        return [np.asarray(llm.embed(text), dtype=np.float32) for text in texts]
    finally:
        llm.close()


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> EncoderFixture:
    path = write_tiny_gguf(
        tmp_path_factory.mktemp("verify") / "encoder.gguf", causal=False, pooling=1
    )
    llm = _llama(path, vocab_only=True)
    try:
        inputs = [(text, text) for text in TEXTS] + [(f"{INSTRUCTION} {q}", q) for q in QUERIES]
        sample_ids, spans = [], []
        for full, alone in inputs:
            ids = llm.tokenize(full.encode(), add_bos=True, special=False)
            own = llm.tokenize(alone.encode(), add_bos=False, special=False)
            sample_ids.append(ids)
            spans.append((len(ids) - len(own), len(ids)))
    finally:
        llm.close()
    texts = [full for full, _ in inputs]
    rows, causal_rows = _rows(path, texts, causal=False), _rows(path, texts, causal=True)
    reference = EncoderReference(
        texts=list(TEXTS),
        sample_ids=sample_ids,
        embeddings=np.stack([r[a:b].mean(axis=0) for r, (a, b) in zip(rows, spans, strict=True)]),
        pooling="mean",
        causal=False,
        queries=list(QUERIES),
        query_instruction=INSTRUCTION,
        max_length=64,
        spans=spans,
    )
    return EncoderFixture(path, reference, rows, causal_rows)


def test_a_faithful_encoder_file_passes_with_its_figures(encoder: EncoderFixture) -> None:
    result = verify_encoder_file(path=encoder.path, reference=encoder.reference, min_cosine=0.9999)
    assert result["problems"] == [] and result["passed"] is True, result["problems"]
    assert result["kind"] == "encoder" and result["loaded"] is True
    assert result["token_mismatches"] == 0
    assert (result["samples"], result["queries"]) == (len(TEXTS), len(QUERIES))
    assert result["embedding_min_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert result["embedding_mean_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert result["query_min_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert result["query_instruction"] == INSTRUCTION
    assert (result["pooling"], result["causal"]) == ("mean", False)
    assert result["bounds"] == {"min_cosine": 0.9999}


def test_encoder_figures_separate_documents_from_queries(encoder: EncoderFixture) -> None:
    """Moving the query's vector moves the query minimum and the overall figures."""
    embeddings = encoder.reference.embeddings.copy()
    embeddings[-1] = embeddings[-1] + 0.5 * embeddings[0]
    reference = dataclasses.replace(encoder.reference, embeddings=embeddings)
    result = verify_encoder_file(encoder.path, reference, min_cosine=0.0)
    moved = _cosine(encoder.reference.embeddings[-1], embeddings[-1])
    assert result["query_min_cosine"] == pytest.approx(moved, abs=1e-5)
    assert result["embedding_min_cosine"] == pytest.approx(moved, abs=1e-5)
    count = len(embeddings)
    assert result["embedding_mean_cosine"] == pytest.approx((count - 1 + moved) / count, abs=1e-5)


def test_an_encoder_without_queries_reports_no_query_figure(encoder: EncoderFixture) -> None:
    documents = len(TEXTS)
    reference = dataclasses.replace(
        encoder.reference,
        queries=[],
        sample_ids=encoder.reference.sample_ids[:documents],
        spans=encoder.reference.spans[:documents],
        embeddings=encoder.reference.embeddings[:documents],
    )
    result = verify_encoder_file(encoder.path, reference, min_cosine=0.9999)
    assert result["passed"], result["problems"]
    assert result["queries"] == 0 and result["query_min_cosine"] is None


def test_an_embedding_cosine_under_the_bound_fails_and_one_at_it_passes(
    encoder: EncoderFixture,
) -> None:
    embeddings = encoder.reference.embeddings.copy()
    embeddings[0] = embeddings[0] + 0.3 * embeddings[1]
    reference = dataclasses.replace(encoder.reference, embeddings=embeddings)
    measured = verify_encoder_file(encoder.path, reference, min_cosine=0.0)["embedding_min_cosine"]
    assert measured < 0.999
    assert verify_encoder_file(encoder.path, reference, min_cosine=measured)["passed"]
    above = float(np.nextafter(measured, 1.0))
    result = verify_encoder_file(encoder.path, reference, min_cosine=above)
    assert result["problems"] == [f"embedding cosine {measured:.6f} < bound {above}"]


@pytest.mark.parametrize("last_id", [0, 260])
def test_a_document_tokenised_differently_is_reported_with_both_spans(
    encoder: EncoderFixture, last_id: int
) -> None:
    """An id below or above llama.cpp's: any difference counts."""
    ids = list(encoder.reference.sample_ids[1])
    assert ids[-1] != last_id
    sample_ids = list(encoder.reference.sample_ids)
    sample_ids[1] = [*ids[:-1], last_id]
    reference = dataclasses.replace(encoder.reference, sample_ids=sample_ids)
    result = verify_encoder_file(encoder.path, reference, min_cosine=0.0)
    span = tuple(encoder.reference.spans[1])
    assert result["token_mismatches"] == 1
    assert result["problems"] == [
        f"tokenisation of sample 1 differs from HF (llama.cpp span {span}, HF {span})"
    ]


@pytest.mark.parametrize("shift", [1, -1])
def test_a_query_span_that_differs_is_reported_as_a_query(
    encoder: EncoderFixture, shift: int
) -> None:
    spans = list(encoder.reference.spans)
    start, stop = spans[-1]
    spans[-1] = (start + shift, stop)
    reference = dataclasses.replace(encoder.reference, spans=spans)
    result = verify_encoder_file(encoder.path, reference, min_cosine=0.0)
    index = len(spans) - 1
    assert result["problems"] == [
        f"tokenisation of query {index} differs from HF "
        f"(llama.cpp span {(start, stop)}, HF {(start + shift, stop)})"
    ]


def test_an_encoder_reference_missing_an_embedding_is_refused(encoder: EncoderFixture) -> None:
    short = dataclasses.replace(encoder.reference, embeddings=encoder.reference.embeddings[:-1])
    with pytest.raises(ValueError, match="zip"):
        verify_encoder_file(encoder.path, short, min_cosine=0.0)


def test_the_encoder_runs_causally_when_the_reference_is_causal(encoder: EncoderFixture) -> None:
    """The file says non-causal; an encoder trained causal must be verified causally."""
    causal_vectors = [
        rows[a:b].mean(axis=0)
        for rows, (a, b) in zip(encoder.causal_rows, encoder.reference.spans, strict=True)
    ]
    causal = dataclasses.replace(
        encoder.reference, embeddings=np.stack(causal_vectors), causal=True
    )
    result = verify_encoder_file(encoder.path, causal, min_cosine=0.9999)
    assert result["passed"] and result["causal"] is True, result["problems"]
    mixed = dataclasses.replace(causal, causal=False)
    assert not verify_encoder_file(encoder.path, mixed, min_cosine=0.9999)["passed"], (
        "bidirectional llama.cpp embeddings matched a causal reference"
    )


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_embed_span_pools_the_span_rows_only(encoder: EncoderFixture, pooling: str) -> None:
    ids, span = encoder.reference.sample_ids[2], encoder.reference.spans[2]
    llm = open_encoder(encoder.path, 128, causal=False, n_threads=1, type_k=0, type_v=0)
    try:
        got = embed_span(llm, ids, span, pooling)
        again = embed_span(llm, ids, span, pooling)  # the KV cache is cleared between calls
    finally:
        llm.close()
    expected = pool(encoder.rows[2][span[0] : span[1]], pooling)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got, again)


def test_llama_token_spans_pool_the_query_text_not_the_instruction(
    encoder: EncoderFixture,
) -> None:
    llm = open_encoder(path=encoder.path, n_ctx=128, causal=False)
    try:
        spans = llama_token_spans(llm, [*TEXTS, *QUERIES], None, 64)
        instructed = llama_token_spans(llm, QUERIES, INSTRUCTION, 64)
        cut = llama_token_spans(llm, [TEXTS[1]], None, 5)
    finally:
        llm.close()
    reference = encoder.reference
    assert [ids for ids, _ in spans[: len(TEXTS)]] == reference.sample_ids[: len(TEXTS)]
    assert [span for _, span in spans[: len(TEXTS)]] == reference.spans[: len(TEXTS)]
    assert spans[0][0][0] == BOS and spans[0][1][0] == 1, "BOS is attended to, not pooled"
    assert instructed == [(reference.sample_ids[-1], reference.spans[-1])]
    assert cut == [(reference.sample_ids[1][:5], (1, 5))]
