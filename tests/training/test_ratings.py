"""Win rates, Wilson intervals and Bradley–Terry ratings against hand-computed figures (no database)."""

import math

import pytest

from training.services.ratings import (
    bradley_terry,
    elo_ratings,
    groups_of,
    judgement_outcomes,
    pair_counts,
    ratings_with_intervals,
    wilson_interval,
    win_rate,
)


def test_a_tie_counts_half_a_win():
    assert win_rate(wins=6, losses=2, ties=2) == pytest.approx(0.7)
    assert win_rate(wins=0, losses=0, ties=0) is None


def test_the_wilson_interval_matches_hand_computed_values():
    # 8 of 10, z = 1.96: centre (0.8 + 0.19207) / 1.38415 = 0.71676, half-width 0.22658
    low, high = wilson_interval(successes=8, n=10)
    assert (low, high) == (pytest.approx(0.49016, abs=1e-5), pytest.approx(0.94332, abs=1e-5))
    # 0 of 10: the interval starts at 0 and ends at z² / (n + z²) = 3.8415 / 13.8415
    low, high = wilson_interval(successes=0, n=10)
    assert low == 0 and high == pytest.approx(0.27753, abs=1e-5)
    # 10 ties of 10 (5 wins' worth): symmetric around one half
    low, high = wilson_interval(successes=5, n=10)
    assert low == pytest.approx(1 - high) and low == pytest.approx(0.23659, abs=1e-5)
    assert wilson_interval(successes=0, n=0) is None


def test_a_judgement_picks_one_over_each_other_answer_or_ties_them_all():
    model_of = {1: "a", 2: "b", 3: "c", 4: None}
    assert judgement_outcomes([[2], [1, 3, 4]], model_of=model_of) == [("b", "a", 1.0), ("b", "c", 1.0)]
    assert judgement_outcomes([[1, 2, 3]], model_of=model_of) == [("a", "b", 0.5), ("a", "c", 0.5), ("b", "c", 0.5)]
    counts = pair_counts([("b", "a", 1.0), ("a", "b", 0.5), ("a", "b", 1.0)])
    assert counts == {("a", "b"): [1.0, 1.0, 1.0]}


def test_bradley_terry_of_two_models_is_the_ratio_of_their_wins():
    # A beat B 3 times of 4: p_A / p_B = 3, i.e. 400 · log10(3) = 190.85 Elo points apart around 1000
    ratings = elo_ratings(bradley_terry({("A", "B"): (3, 1, 0)}))
    assert ratings["A"] - ratings["B"] == pytest.approx(400 * math.log10(3), abs=1e-6)
    assert (ratings["A"] + ratings["B"]) / 2 == pytest.approx(1000)
    # one virtual tie per pair: (3 + 0.5) / (1 + 0.5) = 7/3
    ratings = elo_ratings(bradley_terry({("A", "B"): (3, 1, 0)}, prior_ties=1))
    assert ratings["A"] - ratings["B"] == pytest.approx(400 * math.log10(7 / 3), abs=1e-6)


def test_bradley_terry_recovers_strengths_whose_score_equations_the_counts_satisfy():
    # strengths 4 : 2 : 1 expect A to beat B 2 of 3, B to beat C 2 of 3 and A to beat C 4 of 5; with
    # exactly those counts W_i = Σ_j n_ij p_i / (p_i + p_j) holds, so they are the maximum likelihood
    strength = bradley_terry({("A", "B"): (2, 1, 0), ("B", "C"): (2, 1, 0), ("A", "C"): (4, 1, 0)})
    assert strength["A"] / strength["C"] == pytest.approx(4, rel=1e-6)
    assert strength["B"] / strength["C"] == pytest.approx(2, rel=1e-6)
    ratings = elo_ratings(strength)  # geometric mean 2 → 1000
    assert ratings == {"A": pytest.approx(1120.412, abs=1e-3), "B": pytest.approx(1000, abs=1e-3),
                       "C": pytest.approx(879.588, abs=1e-3)}


def test_models_never_judged_against_each_other_are_rated_in_separate_groups():
    counts = {("A", "B"): (5, 0, 0), ("C", "D"): (1, 1, 0)}
    assert groups_of(counts) == [{"A", "B"}, {"C", "D"}]
    ratings = elo_ratings(bradley_terry(counts, prior_ties=1))
    assert ratings["A"] + ratings["B"] == pytest.approx(2000) and ratings["C"] == pytest.approx(1000)
    assert ratings["A"] > ratings["B"]  # a clean sweep stays finite with the prior


def test_ratings_carry_a_reproducible_bootstrap_interval_around_the_estimate():
    clusters = [[("new", "old", 1.0), ("new", "old", 1.0), ("new", "old", 0.5)] for _ in range(30)]
    clusters += [[("new", "old", 0.0)] * 3 for _ in range(15)]
    ratings = ratings_with_intervals(clusters)
    assert ratings == ratings_with_intervals(clusters)  # a fixed seed: the page shows the same figures twice
    new, old = ratings["new"], ratings["old"]
    assert new.rating > 1000 > old.rating and new.judgements == old.judgements == 135
    assert new.low < new.rating < new.high and old.low < old.rating < old.high
    assert new.group == old.group == 0
    single = ratings_with_intervals([[("new", "old", 1.0)]])
    assert single["new"].low is None  # one prompt: nothing to resample
