"""Losses as small pure functions on tensors, each tested against hand-computed values.

PPO's losses (GAE, whitening, clipped objectives, KL) live in ppo_losses.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_reward_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    *,
    margins: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return the Bradley-Terry loss -log σ(r_chosen - r_rejected - margin), a weighted mean over pairs.

    The margin asks the chosen answer to win by at least that much (Llama 2 uses larger margins for
    clearer preferences). The weights let each ranking count once: its pairs weigh 1/C(K,2)
    (InstructGPT); the weighted mean divides by the sum of weights so the loss scale does not depend
    on how many rankings a batch happens to mix.
    """
    differences = chosen_rewards - rejected_rewards
    if margins is not None:
        differences = differences - margins
    per_pair = -F.logsigmoid(differences)
    if weights is None:
        return per_pair.mean()
    return (weights * per_pair).sum() / weights.sum()


def pairwise_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Return the fraction of pairs whose chosen answer scores strictly higher (a tie counts as wrong)."""
    return (chosen_rewards > rejected_rewards).float().mean()
