"""PPO math against values worked out by hand (the arithmetic is in the comments)."""

import math

import pytest
import torch

from training.engine import ppo_losses as L


def close(actual, expected, tol=1e-5):
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    assert torch.allclose(actual, expected, atol=tol), (actual, expected)


def test_kl_estimators_match_hand_values():
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    # k1 = logp - ref
    close(L.kl_k1(logp, ref), [0.5, -1.0])
    # k3 = (e^r - 1) - r, r = ref - logp = [-0.5, 1.0]: e^-0.5 - 1 + 0.5 = 0.106531; e - 1 - 1 = 0.718282
    close(L.kl_k3(logp, ref), [0.106531, 0.718282])


def test_k3_is_zero_for_identical_policies_and_never_negative():
    logp = torch.log_softmax(torch.randn(4, 7), -1)
    close(L.kl_k3(logp, logp), torch.zeros(4, 7))
    assert (L.kl_k3(logp, torch.log_softmax(torch.randn(4, 7), -1)) >= 0).all()


VALUES = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def test_masked_mean_and_unbiased_var():
    # kept: 1, 2, 4 -> mean 7/3; squared deviations 16/9 + 1/9 + 25/9 = 42/9; / (3 - 1) = 7/3
    close(L.masked_mean(VALUES, MASK), 7 / 3)
    close(L.masked_var(VALUES, MASK), 7 / 3)
    close(L.masked_var(VALUES, MASK, unbiased=False), 14 / 9)
    # per row: (1 + 2) / 2 and 4 / 1
    close(L.masked_mean(VALUES, MASK, dim=1), [1.5, 4.0])


def test_masked_whiten_uses_only_kept_entries_and_zeroes_the_rest():
    # (x - 7/3) / sqrt(7/3), sqrt(7/3) = 1.527525
    close(L.masked_whiten(VALUES, MASK), [[-0.872872, -0.218218, 0.0], [1.091089, 0.0, 0.0]])
    # without the shift: (x - m) / s + m
    close(
        L.masked_whiten(VALUES, MASK, shift_mean=False),
        [[-0.872872 + 7 / 3, -0.218218 + 7 / 3, 0.0], [1.091089 + 7 / 3, 0.0, 0.0]],
    )


def test_masked_var_refuses_a_single_entry():
    with pytest.raises(ValueError):
        L.masked_var(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0]))


def test_scores_are_clipped_then_missing_eos_penalised():
    scores = torch.tensor([12.0, 3.0, -12.0, 0.0])
    has_eos = torch.tensor([True, False, False, True])
    # clip to ±10 -> 10, 3, -10, 0; minus 1 where no EOS -> 10, 2, -11, 0
    close(L.penalised_scores(scores, has_eos, clip=10.0, missing_eos_penalty=1.0), [10.0, 2.0, -11.0, 0.0])
    close(L.penalised_scores(scores, has_eos, clip=None, missing_eos_penalty=None), scores)


def test_shaped_rewards_put_the_score_on_the_last_response_token():
    scores = torch.tensor([2.0, -1.0])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, -0.1, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    # -0.1·kl, padding ignored; score added on token 3 of row 1 and token 2 of row 2
    close(
        L.shaped_rewards(scores, kl, mask, kl_coef=0.1),
        [[-0.01, -0.02, -0.03 + 2.0], [-0.05, 0.01 - 1.0, 0.0]],
    )


def test_gae_with_gamma_one_lambda_095():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 99.0]])
    values = torch.tensor([[0.5, 0.6, 0.7], [1.0, 1.0, 99.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = L.gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # row 1: δ2 = 1 - 0.7 = 0.3 -> A2 = 0.3; δ1 = 0.7 - 0.6 = 0.1 -> A1 = 0.1 + 0.95·0.3 = 0.385;
    #        δ0 = 0.6 - 0.5 = 0.1 -> A0 = 0.1 + 0.95·0.385 = 0.46575; returns = A + V
    # row 2: the padded token counts as the end: δ1 = 2 + 0 - 1 = 1 -> A1 = 1; δ0 = 0 + 1 - 1 = 0 -> A0 = 0.95
    close(adv, [[0.46575, 0.385, 0.3], [0.95, 1.0, 0.0]])
    close(ret, [[0.96575, 0.985, 1.0], [1.95, 2.0, 0.0]])


def test_clipped_policy_loss():
    old = torch.zeros(3)
    new = torch.log(torch.tensor([1.5, 0.5, 1.1]))
    adv = torch.tensor([1.0, 1.0, -2.0])
    loss, stats = L.policy_loss(new, old, adv, torch.ones(3), clip_eps=0.2)
    # token 1: max(-1.5, -1.2) = -1.2 (clipped); token 2: max(-0.5, -0.8) = -0.5; token 3: 2.2 both ways
    close(loss, (-1.2 - 0.5 + 2.2) / 3)
    close(stats["clipfrac"], 1 / 3)
    # 0.5·mean(ln² r) = 0.5·(0.164402 + 0.480453 + 0.009084) / 3
    close(stats["approx_kl"], 0.108990)


def test_clipped_value_loss():
    values = torch.tensor([1.0, 0.0, 0.5])
    old = torch.tensor([0.5, 0.5, 0.5])
    returns = torch.tensor([2.0, 0.0, 0.5])
    loss, stats = L.value_loss(values, old, returns, torch.ones(3), clip_range=0.2)
    # clipped values 0.7, 0.3, 0.5; max((v-R)², (vc-R)²) = max(1, 1.69), max(0, 0.09), 0 -> 0.5·1.78/3
    close(loss, 0.5 * 1.78 / 3)
    close(stats["vf_clipfrac"], 2 / 3)


def test_entropy_and_logprobs_from_logits():
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]])
    # uniform over 2: ln 2; (0.25, 0.75): 0.25·ln 4 + 0.75·ln(4/3) = 0.562335
    close(L.entropy_from_logits(logits), [0.693147, 0.562335])
    close(L.logprobs_of(logits, torch.tensor([0, 1])), [math.log(0.5), math.log(0.75)])
