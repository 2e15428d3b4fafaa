"""Which tokens an LLM2Vec embedding averages: the text's own, never BOS or a query instruction.

Upstream LLM2Vec (McGill-NLP/llm2vec ``llm2vec/llm2vec.py``) embeds a query as
``[instruction, text]``: ``_convert_to_str`` joins them with a separator, ``tokenize`` feeds the
model ``f"{instruction.strip()} {text}"`` (the instruction is attended to) and builds an
``embed_mask`` over the last ``len(tokenizer(text, add_special_tokens=False))`` tokens, and
``get_pooling`` (``skip_instruction=True``) averages those only. A document is ``["", text]``: the
same rule, so BOS is never averaged either.

This module holds that rule once, free of torch and of any tokenizer class, so the HF encoder
(``encoder.py``), the export's reference and llama.cpp verification and the bundle's
``embed_queries`` all pool the same positions. Length: the whole string is cut at ``max_length``
tokens (the text's tail goes first); the pooled span is then whatever is left of the text, so the
instruction is never averaged, even when a text is cut (upstream instead shortens documents to
``doc_max_length`` = 400 tokens word by word before adding the instruction; see docs/llm2vec.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from monGARS.mlops.errors import MongarsError

# The one default query instruction: upstream's E5 instruction for passage retrieval
# (llm2vec/dataset/E5Data.py, "msmarco_passage"), which LLM2Vec's supervised models were trained
# with. Documents are embedded without an instruction.
DEFAULT_QUERY_INSTRUCTION = (
    "Given a web search query, retrieve relevant passages that answer the query"
)

# Tokenize a list of texts to ids each; ``special`` says whether BOS (and the like) are added.
Tokenize = Callable[[list[str], bool], Sequence[Sequence[int]]]


def instructed_text(instruction: str | None, text: str) -> str:
    """The string the model reads: ``"<instruction> <text>"``, or the text alone without one."""
    prefix = (instruction or "").strip()
    return f"{prefix} {text}" if prefix else text


def pooled_span(full_tokens: int, text_tokens: int, max_length: int) -> tuple[int, int]:
    """[start, stop) of the text's tokens in the model input of ``full_tokens`` tokens.

    ``text_tokens`` is the text tokenised alone without special tokens; everything before it
    (BOS, the instruction) is attended to, not averaged. The input is cut at ``max_length``.
    """
    start = max(full_tokens - text_tokens, 0)
    stop = min(full_tokens, max_length)
    if stop <= start:
        raise MongarsError(
            f"max_length: {max_length} tokens leave nothing of the text after the "
            f"{start}-token prefix (BOS and instruction); shorten the query_instruction or raise "
            "the encoder's max_length"
        )
    return start, stop


def token_spans(
    tokenize: Tokenize, texts: Sequence[str], instruction: str | None, max_length: int
) -> list[tuple[list[int], tuple[int, int]]]:
    """Per text: the input ids (special tokens added, cut at ``max_length``) and its pooled span."""
    if isinstance(texts, str):
        raise MongarsError("texts: expected a list of strings, got one string; wrap it in a list")
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise MongarsError(f"texts: item {index} is empty; give non-empty strings")
    texts = list(texts)
    if not texts:
        return []
    full_ids = tokenize([instructed_text(instruction, text) for text in texts], True)
    text_ids = tokenize(texts, False)
    result = []
    for full, alone in zip(full_ids, text_ids, strict=True):
        span = pooled_span(len(full), len(alone), max_length)
        result.append((list(full[: span[1]]), span))
    return result
