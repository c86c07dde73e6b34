"""The report's statistics against hand-computed values."""

import math

import pytest

from simulator.stats import binomial_tail, poisson_binomial_z, share, wilson


def test_wilson_interval_of_a_known_share():
    low, high = wilson(81, 263)  # Wilson's (1927) interval, as statsmodels' proportion_confint gives it
    assert low == pytest.approx(0.2553, abs=1e-4) and high == pytest.approx(0.3662, abs=1e-4)
    assert wilson(0, 0) is None
    assert share(3, 4)["share"] == 0.75


def test_binomial_tail_is_exact():
    assert binomial_tail(3, 3) == pytest.approx(1 / 8)
    assert binomial_tail(2, 3) == pytest.approx(4 / 8)
    assert binomial_tail(0, 5) == 1.0
    # of 60 decisive prompts, 43 wins (72 %) are the fewest that a fair coin reaches less than once in 1,000
    assert binomial_tail(43, 60) < 1e-3 < binomial_tail(42, 60)


def test_poisson_binomial_z_uses_each_trials_own_variance():
    expected, z = poisson_binomial_z(0.6, [0.5] * 100)
    assert expected == 0.5 and z == pytest.approx(0.1 / math.sqrt(0.25 / 100))
    assert poisson_binomial_z(1.0, [1.0, 1.0]) == (1.0, 0.0)
    assert poisson_binomial_z(0.5, []) is None
