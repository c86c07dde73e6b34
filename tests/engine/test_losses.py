import math

import pytest
import torch

from training.engine.losses import pairwise_accuracy, pairwise_reward_loss


def neg_log_sigmoid(x: float) -> float:
    return math.log(1 + math.exp(-x))


# -log σ(1) = log(1 + e^-1) = 0.3132617, -log σ(-1) = 1.3132617, -log σ(0.5) = 0.4740770
CHOSEN = torch.tensor([2.0, 0.0])
REJECTED = torch.tensor([1.0, 1.0])


def test_pairwise_loss_is_mean_negative_log_sigmoid_of_the_gap():
    loss = pairwise_reward_loss(CHOSEN, REJECTED)

    assert loss.item() == pytest.approx((0.3132617 + 1.3132617) / 2, abs=1e-6)


def test_margin_is_subtracted_from_the_gap():
    loss = pairwise_reward_loss(CHOSEN, REJECTED, margins=torch.tensor([0.5, 0.0]))

    assert loss.item() == pytest.approx((0.4740770 + 1.3132617) / 2, abs=1e-6)


def test_weights_give_a_weighted_mean():
    loss = pairwise_reward_loss(CHOSEN, REJECTED, weights=torch.tensor([1.0, 3.0]))

    assert loss.item() == pytest.approx((1 * 0.3132617 + 3 * 1.3132617) / 4, abs=1e-6)


def test_ranking_weights_make_each_ranking_count_once():
    # Ranking A (K=3) gave three pairs, ranking B (K=2) one; with weights 1/C(K,2) the loss is the
    # plain mean of the two rankings' mean losses.
    chosen = torch.tensor([1.0, 2.0, 0.5, -1.0])
    rejected = torch.tensor([0.0, 0.0, 0.0, 0.0])
    weights = torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0])

    loss = pairwise_reward_loss(chosen, rejected, weights=weights)

    ranking_a = (neg_log_sigmoid(1.0) + neg_log_sigmoid(2.0) + neg_log_sigmoid(0.5)) / 3
    ranking_b = neg_log_sigmoid(-1.0)
    assert loss.item() == pytest.approx((ranking_a + ranking_b) / 2, abs=1e-6)


def test_gradient_pushes_chosen_up_and_rejected_down():
    chosen = torch.tensor([0.0], requires_grad=True)
    rejected = torch.tensor([0.0], requires_grad=True)
    pairwise_reward_loss(chosen, rejected).backward()

    # d/dx -log σ(x) at 0 is -σ(-0) = -0.5
    assert chosen.grad.item() == pytest.approx(-0.5)
    assert rejected.grad.item() == pytest.approx(0.5)


def test_accuracy_counts_ties_as_wrong():
    accuracy = pairwise_accuracy(torch.tensor([2.0, 1.0, 0.0]), torch.tensor([1.0, 1.0, 3.0]))

    assert accuracy.item() == pytest.approx(1 / 3)
