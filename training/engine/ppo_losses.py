"""PPO math as small pure functions on tensors: KL estimators, reward shaping, whitening, GAE, losses.

Shapes: per-token tensors are ``[batch, response_len]``; ``mask`` is 1.0 on real response tokens
(the EOS token included) and 0.0 on the padding after it. Conventions follow TRL's last
PPOTrainer (0.11–0.19) and OpenRLHF, so their defaults carry over.
"""

from __future__ import annotations

import torch


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Return log p(token) for each position, computed in float32.

    ``gather - logsumexp`` instead of ``log_softmax`` so a 150k vocabulary never materialises a
    second full-size tensor.
    """
    logits = logits.float()
    picked = torch.gather(logits, -1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Return the entropy of softmax(logits) over the last dimension: logsumexp(z) - Σ p·z."""
    logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k1 estimator of KL(π‖π_ref): log π - log π_ref (unbiased, can be negative)."""
    return logprobs - ref_logprobs


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator (Schulman): (r - 1) - log r with r = π_ref/π; always ≥ 0, lower variance."""
    log_ratio = ref_logprobs - logprobs
    return torch.expm1(log_ratio) - log_ratio


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Return the mean of ``values`` where ``mask`` is 1 (over ``dim``, or over everything)."""
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Return the variance of the masked entries, Bessel-corrected by default (as TRL does)."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        count = mask.sum()
        if count < 2:
            raise ValueError("masked_var needs at least two unmasked entries for an unbiased variance")
        var = var * count / (count - 1)
    return var


def masked_whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Normalise the masked entries to unit variance (and zero mean unless ``shift_mean`` is off).

    Masked-out entries come back as 0 so they cannot leak into later sums.
    """
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def penalised_scores(
    scores: torch.Tensor, has_eos: torch.Tensor, clip: float | None, missing_eos_penalty: float | None
) -> torch.Tensor:
    """Clip sequence scores to ±clip, then subtract the penalty from answers that never ended.

    The penalty comes after the clip so it still bites on answers whose score sits at the clip.
    """
    if clip is not None:
        scores = scores.clamp(-clip, clip)
    if missing_eos_penalty is not None:
        scores = scores - missing_eos_penalty * (~has_eos).to(scores.dtype)
    return scores


def shaped_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """Return per-token rewards: -kl_coef·KL on every response token, plus the score on the last one.

    ``kl`` is the k1 estimate, as in InstructGPT/TRL: its sum over tokens is the sequence KL.
    """
    rewards = -kl_coef * kl * mask
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)
    rows = torch.arange(rewards.size(0), device=rewards.device)
    rewards[rows, last] += scores.to(rewards.dtype)
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (advantages, returns) by generalised advantage estimation, right to left.

    Values past the last response token count as 0: the episode ends with the answer.
    """
    rewards, values = rewards * mask, values * mask
    length = rewards.size(1)
    last_gae = torch.zeros_like(rewards[:, 0])
    advantages = torch.zeros_like(rewards)
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(last_gae)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = delta + gamma * lam * last_gae
        advantages[:, t] = last_gae
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return the clipped surrogate loss (to minimise) and its clip fraction and approximate KL."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    stats = {
        "clipfrac": masked_mean((clipped > unclipped).float(), mask),
        "approx_kl": 0.5 * masked_mean(log_ratio**2, mask),
    }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return the clipped value loss 0.5·mean(max((v-R)², (clip(v)-R)²)) and its clip fraction.

    ``clip(v)`` keeps the new value within ±clip_range of the value seen at rollout time.
    """
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    unclipped_loss = (values - returns) ** 2
    clipped_loss = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_loss, clipped_loss), mask)
    return loss, {"vf_clipfrac": masked_mean((clipped_loss > unclipped_loss).float(), mask)}
