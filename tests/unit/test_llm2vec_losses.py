"""MNTP masking and label shift, SimCSE InfoNCE and the retrieval metrics on known cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.common.retrieval_eval import cosine_similarity, retrieval_metrics
from monGARS.mlops.training.llm2vec.encoder import mean_pool
from monGARS.mlops.training.llm2vec.mntp import (
    IGNORE_INDEX,
    mask_tokens,
    mntp_loss,
    mntp_loss_from_hidden,
    prediction_positions,
)
from monGARS.mlops.training.llm2vec.simcse import info_nce


def test_mntp_label_shift_predicts_masked_token_from_previous_position() -> None:
    # Sequence of 4 tokens; token 2 (id 7) is masked, so position 1's logits must predict 7.
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 7, IGNORE_INDEX]])
    logits = torch.zeros(1, 4, 10)
    logits[0, 1, 7] = 5.0  # right prediction at the previous position
    logits[0, 2, 3] = 9.0  # the masked position itself says nothing about its own label
    expected = -math.log(math.exp(5.0) / (math.exp(5.0) + 9))
    assert mntp_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)

    # Putting the right answer at the masked position instead (no shift) scores badly.
    unshifted = torch.zeros(1, 4, 10)
    unshifted[0, 2, 7] = 5.0
    assert mntp_loss(unshifted, labels).item() == pytest.approx(math.log(10), rel=1e-6)

    rows, positions, targets = prediction_positions(labels)
    assert rows.tolist() == [0] and positions.tolist() == [1] and targets.tolist() == [7]


def test_mntp_loss_from_hidden_matches_full_logits() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(2, 6, 8)
    head = torch.nn.Linear(8, 11, bias=False)
    labels = torch.full((2, 6), IGNORE_INDEX)
    labels[0, 2], labels[0, 5], labels[1, 1] = 4, 9, 10
    full = mntp_loss(head(hidden), labels)
    sparse = mntp_loss_from_hidden(hidden, head, labels)
    assert sparse.item() == pytest.approx(full.item(), rel=1e-6)


def test_mntp_loss_refuses_a_batch_without_masks() -> None:
    labels = torch.full((1, 5), IGNORE_INDEX)
    with pytest.raises(MongarsError, match="mlm_probability"):
        mntp_loss_from_hidden(torch.zeros(1, 5, 4), torch.nn.Linear(4, 3), labels)


def test_mask_tokens_spares_padding_specials_and_first_position() -> None:
    generator = torch.Generator().manual_seed(0)
    # Position 0 holds an ordinary token (5): it is spared because nothing precedes it.
    input_ids = torch.tensor([[5, 11, 12, 13, 14, 15, 1, 2, 2]] * 64)
    attention = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0, 0]] * 64)
    masked, labels = mask_tokens(
        input_ids,
        attention,
        probability=0.5,
        mask_token_id=99,
        special_ids=[0, 1, 2],
        generator=generator,
    )
    selected = labels != IGNORE_INDEX
    # Only positions 1..5 (real, non-special tokens) are ever masked.
    assert not selected[:, [0, 6, 7, 8]].any()
    assert selected.any(dim=1).all()  # every row gets at least one mask
    assert (masked[selected] == 99).all()
    assert (masked[~selected] == input_ids[~selected]).all()
    assert (labels[selected] == input_ids[selected]).all()
    rate = selected[:, 1:6].float().mean().item()
    assert 0.35 < rate < 0.65


def test_mask_tokens_default_collator_keeps_bert_split() -> None:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.arange(5, 205).repeat(50, 1)
    attention = torch.ones_like(input_ids)
    masked, labels = mask_tokens(
        input_ids,
        attention,
        probability=0.5,
        mask_token_id=3,
        special_ids=[0],
        generator=generator,
        collator_type="default",
        vocab_size=300,
    )
    selected = labels != IGNORE_INDEX
    as_mask = (masked == 3) & selected
    unchanged = (masked == input_ids) & selected
    share_mask = as_mask.sum().item() / selected.sum().item()
    share_unchanged = unchanged.sum().item() / selected.sum().item()
    assert 0.77 < share_mask < 0.83
    assert 0.08 < share_unchanged < 0.12


def test_info_nce_known_case() -> None:
    # Two texts; the views are unit vectors at known angles.
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    second = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    temperature = 0.5
    # cos matrix: [[1, 0.6], [0, 0.8]]; row 0 target 0, row 1 target 1.
    row0 = -math.log(math.exp(1 / 0.5) / (math.exp(1 / 0.5) + math.exp(0.6 / 0.5)))
    row1 = -math.log(math.exp(0.8 / 0.5) / (math.exp(0.0) + math.exp(0.8 / 0.5)))
    expected = (row0 + row1) / 2
    assert info_nce(first, second, temperature).item() == pytest.approx(expected, rel=1e-6)
    # Scale does not matter (cosine), and identical views of orthogonal texts give a low loss.
    assert info_nce(first * 3, second * 7, temperature).item() == pytest.approx(expected, rel=1e-6)
    orthogonal = torch.eye(4)
    assert info_nce(orthogonal, orthogonal, 0.05).item() < 1e-6


def test_mean_pool_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 3.0]]


def test_retrieval_metrics_hand_made_case() -> None:
    # 3 queries, 4 passages.
    similarity = np.array(
        [
            [0.9, 0.1, 0.2, 0.3],  # relevant {0}: rank 1
            [0.8, 0.1, 0.7, 0.2],  # relevant {2}: rank 2
            [0.5, 0.4, 0.3, 0.2],  # relevant {1, 3}: ranks 2 and 4
        ]
    )
    relevant = [{0}, {2}, {1, 3}]
    metrics = retrieval_metrics(similarity, relevant, ks=(1, 2, 10))
    assert metrics["recall_at_1"] == pytest.approx((1 + 0 + 0) / 3)
    assert metrics["recall_at_2"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert metrics["recall_at_10"] == pytest.approx(1.0)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)


def test_retrieval_metrics_ties_do_not_reward_a_constant_encoder() -> None:
    similarity = np.zeros((2, 3))
    metrics = retrieval_metrics(similarity, [{2}, {1}], ks=(1,))
    assert metrics["recall_at_1"] == 0.0
    assert metrics["mrr"] == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_retrieval_metrics_refuses_bad_shapes() -> None:
    with pytest.raises(MongarsError, match="shape"):
        retrieval_metrics(np.zeros((2, 3)), [{0}])
    with pytest.raises(MongarsError, match="outside the pool"):
        retrieval_metrics(np.zeros((1, 3)), [{5}])


def test_cosine_similarity_normalises_rows() -> None:
    scores = cosine_similarity(np.array([[2.0, 0.0]]), np.array([[0.0, 3.0], [5.0, 0.0]]))
    assert scores.tolist() == [[0.0, 1.0]]
