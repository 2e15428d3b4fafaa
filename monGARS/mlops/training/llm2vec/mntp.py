"""MNTP, masked next-token prediction: LLM2Vec's bridge from a decoder to a bidirectional encoder.

A fraction of the tokens is replaced by an existing token of the vocabulary (no new embedding
rows, so the encoder keeps the base model's shapes and exports as-is). With bidirectional attention
the model sees the whole masked sequence; the token at masked position ``i`` is predicted from the
logits of position ``i - 1``, which is how the pretrained LM head was already trained to predict
(next-token prediction), hence "next" in MNTP. Labels exist on masked positions only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from monGARS.mlops.errors import MongarsError

IGNORE_INDEX = -100
BLANK_TOKEN = "_"


def resolve_mask_token_id(tokenizer: Any, mask_token_type: str) -> int:
    """The id of the existing token that replaces masked tokens (upstream's mask_token_type).

    ``blank`` is upstream's: ``run_mntp.py`` sets ``tokenizer.mask_token = "_"`` and its collators
    take ``convert_tokens_to_ids(mask_token)``, the vocabulary entry spelled ``_``. Encoding ``"_"``
    as text is not the same on SentencePiece vocabularies (Mistral v0.1: ``▁_`` 583, not ``_``
    28730). An id that is the unknown token's is refused: it would mask with ``<unk>``.
    """
    if mask_token_type == "blank":
        token_id = tokenizer.convert_tokens_to_ids(BLANK_TOKEN)
        unknown = getattr(tokenizer, "unk_token_id", None)
        if token_id is None or (unknown is not None and token_id == unknown):
            raise MongarsError(
                "mask_token_type: 'blank' needs '_' as a token of the vocabulary, and this "
                "tokenizer maps it to the unknown token; use 'eos' or 'pad'"
            )
        return int(token_id)
    attribute = {"eos": "eos_token_id", "pad": "pad_token_id", "mask": "mask_token_id"}.get(
        mask_token_type
    )
    if attribute is None:
        raise MongarsError(
            f"mask_token_type: {mask_token_type!r} is not one of blank, eos, pad, mask"
        )
    token_id = getattr(tokenizer, attribute, None)
    if token_id is None:
        raise MongarsError(
            f"mask_token_type: the tokenizer has no {attribute.removesuffix('_id')}; "
            "use 'blank' or 'eos' (no new token is added: the encoder keeps the base vocabulary)"
        )
    return int(token_id)


def mask_tokens(
    input_ids: Any,
    attention_mask: Any,
    *,
    probability: float,
    mask_token_id: int,
    special_ids: Iterable[int],
    generator: Any,
    collator_type: str = "all_mask",
    vocab_size: int | None = None,
) -> tuple[Any, Any]:
    """Masked inputs and labels (original ids on masked positions, -100 elsewhere).

    Never masked: padding, special tokens and position 0 (nothing precedes it to predict it from).
    Each sequence with a maskable token gets at least one mask so no row contributes nothing.
    ``collator_type="default"`` keeps BERT's split (80% mask token, 10% random, 10% unchanged).
    """
    import torch

    special = torch.tensor(sorted(set(special_ids)), dtype=input_ids.dtype, device=input_ids.device)
    eligible = attention_mask.bool() & ~torch.isin(input_ids, special)
    eligible[:, 0] = False
    draws = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    selected = eligible & (draws < probability)
    # Rows left without a mask get their eligible position with the smallest draw.
    empty = eligible.any(dim=1) & ~selected.any(dim=1)
    if empty.any():
        masked_draws = draws.masked_fill(~eligible, 2.0)
        forced = masked_draws.argmin(dim=1)
        rows = torch.nonzero(empty).flatten()
        selected[rows, forced[rows]] = True
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    masked = input_ids.clone()
    if collator_type == "all_mask":
        masked[selected] = mask_token_id
    elif collator_type == "default":
        if vocab_size is None:
            raise MongarsError("data_collator_type: 'default' needs the vocabulary size")
        split = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
        to_mask = selected & (split < 0.8)
        to_random = selected & (split >= 0.8) & (split < 0.9)
        masked[to_mask] = mask_token_id
        random_ids = torch.randint(
            vocab_size, input_ids.shape, generator=generator, device=input_ids.device
        )
        masked[to_random] = random_ids[to_random].to(input_ids.dtype)
    else:
        raise MongarsError(f"data_collator_type: {collator_type!r} is not one of all_mask, default")
    return masked, labels


def mntp_loss(logits: Any, labels: Any) -> Any:
    """Cross-entropy of masked tokens, each predicted from the previous position's logits.

    ``logits`` [batch, seq, vocab], ``labels`` [batch, seq] with -100 where nothing is predicted.
    """
    import torch

    shifted_logits = logits[:, :-1, :]
    shifted_labels = labels[:, 1:]
    return torch.nn.functional.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.shape[-1]).float(),
        shifted_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
    )


def prediction_positions(labels: Any) -> tuple[Any, Any, Any]:
    """(rows, positions, targets): position ``p`` of row ``r`` predicts labels[r, p + 1]."""
    import torch

    rows, positions = torch.nonzero(labels[:, 1:] != IGNORE_INDEX, as_tuple=True)
    return rows, positions, labels[rows, positions + 1]


def mntp_loss_from_hidden(hidden: Any, lm_head: Any, labels: Any) -> Any:
    """:func:`mntp_loss` computed only where a label exists: the LM head runs on those rows alone.

    Same value as ``mntp_loss(lm_head(hidden), labels)``, without materialising a
    [batch, seq, vocab] tensor (128k-token vocabularies make that the biggest tensor of the step).
    """
    import torch

    rows, positions, targets = prediction_positions(labels)
    if targets.numel() == 0:
        raise MongarsError("mlm_probability: no token was masked in a batch; raise mlm_probability")
    logits = lm_head(hidden[rows, positions])
    return torch.nn.functional.cross_entropy(logits.float(), targets)


def special_token_ids(tokenizer: Any) -> list[int]:
    """Ids MNTP never masks: every special token the tokenizer declares."""
    return sorted({int(i) for i in tokenizer.all_special_ids if i is not None})


def make_mntp_step(
    model: Any,
    tokenizer: Any,
    batches: Any,
    *,
    max_length: int,
    probability: float,
    mask_token_id: int,
    collator_type: str,
    generator: Any,
) -> Any:
    """A closure computing one micro-batch's MNTP loss on the (LoRA-wrapped) causal LM.

    Masking runs on CPU with ``generator`` (so a seed gives the same masks on any device), then the
    batch moves to the model's device. Data-parallel ranks all tokenize and mask the whole global
    micro-batch (the same draws as one process), run only their rows and return their share of
    its loss: their masked tokens' loss sum over the micro-batch's masked-token count.
    """
    from monGARS.mlops.training.common.distributed import current_world, shard

    world = current_world()
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = causal_lm.base_model
    lm_head = causal_lm.get_output_embeddings()
    specials = special_token_ids(tokenizer)
    # Random replacements come from real tokens only, not padded rows of the embedding matrix.
    vocab_size = min(int(causal_lm.config.vocab_size), len(tokenizer))

    def step() -> Any:
        batch = tokenizer(
            next(batches), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        masked, labels = mask_tokens(
            batch["input_ids"],
            batch["attention_mask"],
            probability=probability,
            mask_token_id=mask_token_id,
            special_ids=specials,
            generator=generator,
            collator_type=collator_type,
            vocab_size=vocab_size,
        )
        device = lm_head.weight.device
        if world.distributed:
            rows = shard(masked.shape[0], world)
            total = int((labels[:, 1:] != IGNORE_INDEX).sum())
            masked, labels = masked[rows], labels[rows]
            attention = batch["attention_mask"][rows]
        else:
            attention = batch["attention_mask"]
        hidden = backbone(
            input_ids=masked.to(device), attention_mask=attention.to(device)
        ).last_hidden_state
        if not world.distributed:
            return mntp_loss_from_hidden(hidden, lm_head, labels.to(device))
        mine = int((labels[:, 1:] != IGNORE_INDEX).sum())
        if mine == 0:  # nothing masked in this rank's rows: a zero share, still in the graph
            return hidden.sum() * 0.0
        return mntp_loss_from_hidden(hidden, lm_head, labels.to(device)) * (mine / total)

    return step
