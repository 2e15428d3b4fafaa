"""Which logged evaluation is the trained model's final loss (common.loop.logged_eval_loss)."""

from __future__ import annotations

from monGARS.mlops.training.common.loop import logged_eval_loss


def test_the_evaluation_logged_at_the_last_step_is_reused() -> None:
    history = [
        {"step": 0, "eval_loss": 6.9},
        {"step": 5, "loss": 6.5},
        {"step": 10, "eval_loss": 6.1},
        {"step": 10, "loss": 6.0},
    ]
    assert logged_eval_loss(history, 10) == 6.1


def test_no_evaluation_at_the_last_step_asks_for_a_new_one() -> None:
    history = [
        {"step": 0, "eval_loss": 6.9},
        {"step": 10, "eval_loss": 6.1},
        {"step": 12, "loss": 5.9},
    ]
    assert logged_eval_loss(history, 12) is None  # the step-10 loss is stale by two steps
    assert logged_eval_loss([{"step": 12, "loss": 5.9}], 12) is None
    assert logged_eval_loss([], 0) is None


def test_a_resumed_history_repeating_a_step_gives_the_latest_entry() -> None:
    history = [{"step": 20, "eval_loss": 6.3}, {"step": 20, "eval_loss": 6.2}]
    assert logged_eval_loss(history, 20) == 6.2
