"""MNTP in its exact form: which tokens are masked for a given generator, the 80/10/10 split at its
boundaries, the mask token each ``mask_token_type`` resolves to, and the training step's loss
(one process, and each data-parallel rank's share) on a small torch stand-in of a causal LM.

Cheap on purpose: these run once per mutant of ``llm2vec/mntp.py`` (tests/mutation.toml).
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.tiny_model import build_tokenizer
from monGARS.mlops.training.llm2vec.mntp import (
    make_mntp_step,
    mask_tokens,
    mntp_loss,
    mntp_loss_from_hidden,
    resolve_mask_token_id,
    special_token_ids,
)

# The documented label of a position that predicts nothing: PyTorch's default ignore_index, the
# value Hugging Face's losses and collators use.
X = -100
MASK = 99


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer()


# ---------------------------------------------------------------------------- the mask token


def test_each_mask_token_type_resolves_to_its_token(tokenizer: Any) -> None:
    assert tokenizer.unk_token_id is None  # byte-level BPE: "_" is a vocabulary entry
    blank = tokenizer.get_vocab()["_"]
    assert resolve_mask_token_id(tokenizer, "blank") == blank, "blank is not the '_' entry"
    assert resolve_mask_token_id(tokenizer, "eos") == tokenizer.eos_token_id == 1
    assert resolve_mask_token_id(tokenizer, "pad") == tokenizer.pad_token_id == 2
    with pytest.raises(MongarsError, match="the tokenizer has no mask_token; use 'blank'"):
        resolve_mask_token_id(tokenizer, "mask")
    for unknown in ("cls", "bert"):  # sorting after and before "blank"
        with pytest.raises(MongarsError, match=f"'{unknown}' is not one of blank, eos, pad, mask"):
            resolve_mask_token_id(tokenizer, unknown)


def _vocabulary(blank: int | None, unknown: int | None) -> Any:
    """A tokenizer as far as ``blank`` needs one: where '_' maps, and the unknown id."""
    return SimpleNamespace(convert_tokens_to_ids=lambda token: blank, unk_token_id=unknown)


def test_a_blank_that_is_the_unknown_token_or_missing_is_refused() -> None:
    assert resolve_mask_token_id(_vocabulary(blank=28730, unknown=0), "blank") == 28730
    assert resolve_mask_token_id(_vocabulary(blank=5, unknown=None), "blank") == 5
    assert resolve_mask_token_id(_vocabulary(blank=3, unknown=7), "blank") == 3, (
        "a blank id below the unknown id is a real token, not the unknown one"
    )
    for blank, unknown in ((0, 0), (None, None), (None, 0)):
        with pytest.raises(MongarsError, match="maps it to the unknown token"):
            resolve_mask_token_id(_vocabulary(blank, unknown), "blank")


def test_special_ids_are_every_declared_special_token_once(tokenizer: Any) -> None:
    assert special_token_ids(tokenizer) == [0, 1, 2, 3, 4], "BOS, EOS, PAD, im_start, im_end"
    declared = SimpleNamespace(all_special_ids=[4, None, 1, 4])
    assert special_token_ids(declared) == [1, 4], "None or repeated special ids not dropped"


# ---------------------------------------------------------------------------- which tokens


# Row 0: position 0 and the BOS id (0) are never masked; row 1 holds a special id (4) and padding;
# row 2 is BOS and padding only, nothing in it can be masked.
IDS = torch.tensor(
    [[0, 11, 12, 13, 14, 15, 16, 17], [0, 21, 4, 23, 24, 2, 2, 2], [0, 2, 2, 2, 2, 2, 2, 2]]
)
ATTENTION = torch.tensor([[1] * 8, [1] * 5 + [0] * 3, [1] + [0] * 7])
SPECIALS = [0, 1, 2, 3, 4]
# torch.rand(IDS.shape) after manual_seed(39), rounded:
#   row 0: .0036 .4507 .2621 .3536 .0229 .9237 .2448 .1350
#   row 1: .1125 .3648 .5317 .9756 .7606 .3499 .6901 .1334
SEED = 39


def _mask(probability: float, **options: Any) -> tuple[Any, Any]:
    return mask_tokens(
        IDS,
        ATTENTION,
        probability=probability,
        mask_token_id=MASK,
        special_ids=SPECIALS,
        generator=torch.Generator().manual_seed(SEED),
        **options,
    )


def test_the_draws_these_cases_rely_on() -> None:
    draws = torch.rand(IDS.shape, generator=torch.Generator().manual_seed(SEED))
    assert draws[0].tolist() == pytest.approx(
        [0.0036, 0.4507, 0.2621, 0.3536, 0.0229, 0.9237, 0.2448, 0.1350], abs=1e-4
    ), "torch's CPU generator changed: the hand-derived cases below need new values"


def test_a_token_is_masked_exactly_when_its_draw_is_under_the_probability() -> None:
    draws = torch.rand(IDS.shape, generator=torch.Generator().manual_seed(SEED))
    probability = draws[0, 3].item()  # .3536 exactly: strictly under it is masked, not equal
    masked, labels = _mask(probability)
    assert set(labels.flatten().tolist()) - set(IDS.flatten().tolist()) == {X}, (
        "positions that predict nothing must be labelled -100"
    )
    assert labels[0].tolist() == [X, X, 12, X, 14, X, 16, 17], (
        "row 0 must mask the tokens whose draw is < p (positions 2, 4, 6, 7); position 0 is "
        "never masked and position 3, whose draw equals p, is not"
    )
    assert masked[0].tolist() == [0, 11, MASK, 13, MASK, 15, MASK, MASK]
    # Row 1's eligible draws (.3648 .9756 .7606) are all >= p: its smallest one is forced.
    assert labels[1].tolist() == [X, 21, X, X, X, X, X, X], "row 1 did not get its forced mask"
    assert labels[2].tolist() == [X] * 8, "a row of BOS and padding got a mask"
    assert masked[2].tolist() == IDS[2].tolist()


def test_rows_left_without_a_mask_get_their_smallest_eligible_draw() -> None:
    # p = 0 selects nothing: every row that can be masked gets exactly one mask, at its smallest
    # draw among maskable positions. Row 0's smallest draw is position 0 (never masked) and row
    # 1's smaller draws sit on position 0 and padding: the forced masks are at 4 and 1.
    masked, labels = _mask(0.0)
    assert labels.tolist() == [
        [X, X, X, X, 14, X, X, X],
        [X, 21, X, X, X, X, X, X],
        [X] * 8,
    ], "the forced mask is not at the row's smallest draw among maskable tokens"
    assert masked.tolist() == [
        [0, 11, 12, 13, MASK, 15, 16, 17],
        [0, MASK, 4, 23, 24, 2, 2, 2],
        IDS[2].tolist(),
    ]


def test_every_eligible_token_is_masked_at_probability_one() -> None:
    masked, labels = _mask(1.0)
    # Every real, non-special token after position 0.
    assert (labels != X).tolist() == [
        [False, True, True, True, True, True, True, True],
        [False, True, False, True, True, False, False, False],
        [False] * 8,
    ], "at p = 1 the masked set must be exactly the maskable tokens"
    assert masked[labels != X].eq(MASK).all()


# ---------------------------------------------------------------------------- BERT's 80/10/10

SPLIT_IDS = torch.arange(5, 5 + 4 * 64).reshape(4, 64)
VOCAB = 300
# Seeds found by search: the split draw (the generator's second tensor) lands exactly on the
# float32 boundary 0.8 at (1, 18) for one, exactly on 0.9 at (0, 4) for the other.
BOUNDARY_08 = (94588, (1, 18))
BOUNDARY_09 = (78320, (0, 4))


def _split_case(seed: int) -> tuple[Any, Any, Any, Any]:
    """mask_tokens at p = 1 (every position but 0 selected), and the same generator's split and
    random-id draws, in the order mask_tokens takes them."""
    masked, labels = mask_tokens(
        SPLIT_IDS,
        torch.ones_like(SPLIT_IDS),
        probability=1.0,
        mask_token_id=3,
        special_ids=[0],
        generator=torch.Generator().manual_seed(seed),
        collator_type="default",
        vocab_size=VOCAB,
    )
    replay = torch.Generator().manual_seed(seed)
    torch.rand(SPLIT_IDS.shape, generator=replay)  # the selection draws
    split = torch.rand(SPLIT_IDS.shape, generator=replay)
    random_ids = torch.randint(VOCAB, SPLIT_IDS.shape, generator=replay)
    return masked, labels, split, random_ids


@pytest.mark.parametrize("seed", [BOUNDARY_08[0], BOUNDARY_09[0]])
def test_default_collator_masks_under_08_randomises_under_09_keeps_the_rest(seed: int) -> None:
    masked, labels, split, random_ids = _split_case(seed)
    expected = torch.where(split < 0.8, 3, torch.where(split < 0.9, random_ids, SPLIT_IDS))
    expected[:, 0] = SPLIT_IDS[:, 0]  # position 0 is never selected
    wrong = (masked != expected).nonzero().tolist()
    assert not wrong, f"positions {wrong[:5]} break mask < 0.8 <= random < 0.9 <= unchanged"
    assert labels[:, 1:].equal(SPLIT_IDS[:, 1:]), "a selected token lost its label"
    assert (labels[:, 0] == X).all()


def test_default_collator_boundaries_fall_on_the_upper_side() -> None:
    seed, (row, col) = BOUNDARY_08
    masked, _, split, random_ids = _split_case(seed)
    assert split[row, col] == torch.tensor(0.8), "the search's boundary draw moved"
    assert random_ids[row, col] not in (3, SPLIT_IDS[row, col])
    assert masked[row, col] == random_ids[row, col], (
        f"a split draw of exactly 0.8 gave {masked[row, col].item()}: it must be a random id "
        "(mask only strictly under 0.8)"
    )
    seed, (row, col) = BOUNDARY_09
    masked, _, split, _ = _split_case(seed)
    assert split[row, col] == torch.tensor(0.9), "the search's boundary draw moved"
    assert masked[row, col] == SPLIT_IDS[row, col], (
        f"a split draw of exactly 0.9 gave {masked[row, col].item()}: it must stay unchanged "
        "(random only strictly under 0.9)"
    )


def test_bad_collator_settings_are_refused() -> None:
    with pytest.raises(MongarsError, match="'default' needs the vocabulary size"):
        _mask(0.5, collator_type="default")
    for unknown in ("all", "bert", "span"):  # sorting before "all_mask", then around "default"
        with pytest.raises(MongarsError, match=f"'{unknown}' is not one of all_mask, default"):
            _mask(0.5, collator_type=unknown, vocab_size=300)
    with pytest.raises(TypeError):  # probability and mask id are numbers: keyword-only
        mask_tokens(IDS, ATTENTION, 0.5, MASK, SPECIALS, torch.Generator())  # type: ignore[misc]


# ---------------------------------------------------------------------------- the loss


def test_loss_from_hidden_with_a_single_masked_token() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(1, 4, 6)
    head = torch.nn.Linear(6, 5, bias=False)
    labels = torch.tensor([[X, X, 3, X]])
    expected = -torch.log_softmax(head(hidden[0, 1]), dim=-1)[3].item()
    assert mntp_loss_from_hidden(hidden, head, labels).item() == pytest.approx(expected, rel=1e-6)


def test_loss_averages_over_masked_tokens_of_every_row() -> None:
    logits = torch.zeros(2, 3, 4)
    logits[0, 0, 1] = math.log(3.0)  # row 0 predicts token 1 at position 1: p = 3 / 6
    logits[1, 1, 2] = math.log(7.0)  # row 1 predicts token 2 at position 2: p = 7 / 10
    labels = torch.tensor([[X, 1, X], [X, X, 2]])
    expected = (-math.log(3 / 6) - math.log(7 / 10)) / 2
    assert mntp_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------- the step

WIDTH = 8
TEXTS = [
    "Le chat dort sur le canapé du salon depuis ce matin.",
    "Il pleut.",
    "def forward(self, input_ids):",
    "",  # BOS alone once padded: nothing to mask in this row
]


class _Backbone(torch.nn.Module):
    """Bidirectional stand-in: each position adds the mean of the attended tokens to its own."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, WIDTH)

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        tokens = self.embed(input_ids)
        weights = attention_mask.unsqueeze(-1).float()
        context = (tokens * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True)
        return SimpleNamespace(last_hidden_state=tokens + context)


class _CausalLm(torch.nn.Module):
    """transformers' interface: ``base_model`` (the backbone), the LM head, ``config``."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.model = _Backbone(vocab)
        self.lm_head = torch.nn.Linear(WIDTH, vocab, bias=False)
        self.config = SimpleNamespace(vocab_size=vocab)

    @property
    def base_model(self) -> Any:
        return self.model

    def get_output_embeddings(self) -> Any:
        return self.lm_head


class _PeftModel(torch.nn.Module):
    """peft's layout: ``base_model`` is the tuner wrapper, ``get_base_model()`` the causal LM."""

    def __init__(self, causal_lm: _CausalLm) -> None:
        super().__init__()
        self.base_model = torch.nn.Module()
        self.base_model.model = causal_lm

    def get_base_model(self) -> _CausalLm:
        return self.base_model.model


def _step(model: Any, tokenizer: Any, texts: list[str], seed: int) -> Any:
    return make_mntp_step(
        model,
        tokenizer,
        iter([texts]),
        max_length=8,
        probability=0.4,
        mask_token_id=MASK,
        collator_type="default",
        generator=torch.Generator().manual_seed(seed),
    )()


def _expected(causal_lm: _CausalLm, tokenizer: Any, texts: list[str], seed: int) -> float:
    """The masked batch's loss from the full logits, the tokenizer's batch cut at 8 tokens; random
    replacements drawn among the tokenizer's ids (the embedding may have padded rows)."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=8, return_tensors="pt")
    masked, labels = mask_tokens(
        batch["input_ids"],
        batch["attention_mask"],
        probability=0.4,
        mask_token_id=MASK,
        special_ids=tokenizer.all_special_ids,
        generator=torch.Generator().manual_seed(seed),
        collator_type="default",
        vocab_size=len(tokenizer),
    )
    hidden = causal_lm.model(masked, batch["attention_mask"]).last_hidden_state
    return mntp_loss(causal_lm.lm_head(hidden), labels).item()


def test_step_loss_is_the_masked_batchs_loss(tokenizer: Any) -> None:
    causal_lm = _CausalLm(len(tokenizer) + 64)  # padded embedding rows, as real checkpoints have
    expected = _expected(causal_lm, tokenizer, TEXTS, seed=5)
    for model in (causal_lm, _PeftModel(causal_lm)):
        loss = _step(model, tokenizer, TEXTS, seed=5)
        assert loss.item() == pytest.approx(expected, rel=1e-5), (
            f"{type(model).__name__}: step loss {loss.item():.6f}, the masked batch's loss (cut "
            f"at max_length, padded, specials spared) {expected:.6f}"
        )


def test_rank_shares_add_up_to_the_one_process_loss(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    causal_lm = _CausalLm(len(tokenizer))
    texts = TEXTS[:3]
    expected = _expected(causal_lm, tokenizer, texts, seed=7)
    monkeypatch.setenv("WORLD_SIZE", "2")
    shares = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        shares.append(_step(causal_lm, tokenizer, texts, seed=7).item())
    assert all(share > 0 for share in shares), f"a rank with masked rows returned {shares}"
    assert sum(shares) == pytest.approx(expected, rel=1e-5), (
        f"ranks returned {shares}, summing to {sum(shares):.6f}; one process's loss over the "
        f"same masked micro-batch is {expected:.6f}: a rank's share must be its masked tokens' "
        "loss sum over the micro-batch's masked-token count"
    )


def test_a_rank_with_nothing_masked_returns_a_zero_share_in_the_graph(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rows 0-1 go to rank 0, row 2 ("": BOS alone) to rank 1.
    texts = [TEXTS[1], TEXTS[2], TEXTS[3]]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    share = _step(_CausalLm(len(tokenizer)), tokenizer, texts, seed=7)
    assert share.item() == 0.0, f"a rank without masked tokens returned {share.item()}, not 0"
    assert share.requires_grad, "the zero share must stay in the graph (every rank runs backward)"


def test_step_settings_cannot_be_passed_by_position(tokenizer: Any) -> None:
    with pytest.raises(TypeError):
        make_mntp_step(_CausalLm(8), tokenizer, iter([]), 8, 0.4, MASK, "default", None)  # type: ignore[misc]
