"""Held-out RAFT evaluation: greedy answers of a model, scored against the reference.

Per model (the SFT adapter before RAFT, the RAFT adapter after), over the same held-out examples:

- ``exact_match``: the text after ``<ANSWER>:`` equals the reference answer after normalisation;
- ``answer_f1``: SQuAD token F1 of that text against the reference (partial credit);
- ``quote_match``: on examples that contain the oracle, the share whose answer quotes at least one
  passage and only passages copied verbatim from the oracle document;
- ``no_quote_match``: on examples without the oracle, the share that says so (``##no_quote##``);
- ``format_rate``: the share of answers in the RAFT format (quotes or no-quote marker, then answer).

The loss on the answer tokens comes from the Trainer's evaluation, as in sft.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monGARS.mlops.training.raft.data import RaftExample
from monGARS.mlops.training.raft.format import (
    exact_match,
    parse_answer,
    quotes_grounded,
    token_f1,
)


def prompt_ids(tokenizer: Any, example: RaftExample) -> list[int]:
    """Token ids of the example's prompt up to the assistant header (the chat template's own)."""
    text = tokenizer.apply_chat_template(
        example.messages(with_target=False), tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def stop_token_ids(tokenizer: Any) -> list[int]:
    """EOS and, when the vocabulary has it, ChatML's end of turn: where an answer stops."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    end_of_turn = tokenizer.get_vocab().get("<|im_end|>")
    if end_of_turn is not None and end_of_turn not in ids:
        ids.append(end_of_turn)
    return ids


def generate_answers(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Greedy continuations of token-id prompts, batched with left padding."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = stop_token_ids(tokenizer)
    was_training = model.training
    model.eval()
    outputs: list[str] = []
    try:
        with torch.no_grad():
            for start in range(0, len(prompts), batch_size):
                batch = prompts[start : start + batch_size]
                width = max(len(ids) for ids in batch)
                input_ids = torch.tensor(
                    [[pad] * (width - len(ids)) + ids for ids in batch], device=device
                )
                attention = torch.tensor(
                    [[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=device
                )
                generated = model.generate(
                    input_ids=input_ids,
                    attention_mask=attention,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=stops,
                    pad_token_id=pad,
                )
                for row in generated[:, width:].tolist():
                    outputs.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    finally:
        model.train(was_training)
    return outputs


def score_answers(examples: Sequence[RaftExample], outputs: Sequence[str]) -> dict[str, Any]:
    """Exact match, answer F1, quote match, no-quote match and format rate (see module doc)."""
    with_oracle = [i for i, e in enumerate(examples) if e.oracle_index is not None]
    without = [i for i, e in enumerate(examples) if e.oracle_index is None]
    parsed = [parse_answer(text) for text in outputs]

    def share(indices: Sequence[int], hit: Any) -> float | None:
        return round(sum(1 for i in indices if hit(i)) / len(indices), 4) if indices else None

    everything = range(len(examples))
    return {
        "examples": len(examples),
        "examples_with_oracle": len(with_oracle),
        "exact_match": share(
            everything, lambda i: exact_match(parsed[i].answer, examples[i].answer)
        ),
        "answer_f1": round(
            sum(token_f1(p.answer, e.answer) for p, e in zip(parsed, examples, strict=True))
            / max(len(examples), 1),
            4,
        ),
        "quote_match": share(
            with_oracle, lambda i: quotes_grounded(parsed[i].quotes, examples[i].oracle)
        ),
        "no_quote_match": share(without, lambda i: parsed[i].no_quote and not parsed[i].quotes),
        "format_rate": share(everything, lambda i: parsed[i].well_formed),
    }
