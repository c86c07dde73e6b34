"""Kendall's tau-b and Krippendorff's alpha against hand-worked and published values."""

import math

import pytest

from ranking.services.agreement import (
    kendall_tau_b,
    krippendorff_alpha_ordinal,
    mean_pairwise_tau_b,
    pairwise_accuracy,
)
from ranking.services.orderings import ordering_fractional_ranks

A, B, C, D = 1, 2, 3, 4


def test_identical_orderings_have_tau_one_and_reversed_minus_one():
    assert kendall_tau_b([[A], [B], [C]], [[A], [B], [C]]) == 1.0
    assert kendall_tau_b([[A], [B], [C]], [[C], [B], [A]]) == -1.0


def test_one_swap_among_four():
    # A>B>C>D vs A>C>B>D: 6 pairs, only (B, C) discordant -> (5 - 1) / 6 = 2/3
    assert kendall_tau_b([[A], [B], [C], [D]], [[A], [C], [B], [D]]) == pytest.approx(2 / 3)


def test_tau_b_with_ties_on_one_side():
    # x: A > {B, C} > D   y: A > B > C > D
    # pairs: AB c, AC c, AD c, BC tied in x only (Tx=1), BD c, CD c -> P=5, Q=0, Tx=1, Ty=0
    # tau-b = 5 / sqrt((5 + 0 + 1) * (5 + 0 + 0)) = 5 / sqrt(30)
    assert kendall_tau_b([[A], [B, C], [D]], [[A], [B], [C], [D]]) == pytest.approx(5 / math.sqrt(30))


def test_tau_b_with_ties_on_both_sides():
    # x: {A, B} > C > D    y: {A, B} > D > C
    # AB tied in both (ignored); AC c, AD c, BC c, BD c, CD d -> P=4, Q=1 -> 3 / sqrt(5 * 5) = 0.6
    assert kendall_tau_b([[A, B], [C], [D]], [[A, B], [D], [C]]) == pytest.approx(0.6)


def test_tau_b_is_undefined_when_one_side_ties_everything():
    assert kendall_tau_b([[A, B, C]], [[A], [B], [C]]) is None


def test_mean_pairwise_tau_b():
    # r1 = r2 -> 1; r1 vs r3 and r2 vs r3 (one swap of three: (2 - 1) / 3 = 1/3) -> mean (1 + 1/3 + 1/3) / 3 = 5/9
    r1 = [[A], [B], [C]]
    r3 = [[B], [A], [C]]
    assert mean_pairwise_tau_b([r1, r1, r3]) == pytest.approx(5 / 9)
    assert mean_pairwise_tau_b([r1]) is None


def test_gold_pairwise_accuracy_counts_a_tie_as_a_miss():
    # gold A > B > {C, D}: strict pairs AB, AC, AD, BC, BD (5). labeler: {A, B} > D > C:
    # AB tied -> miss, AC hit, AD hit, BC hit, BD hit -> 4 of 5
    assert pairwise_accuracy([[A, B], [D], [C]], reference=[[A], [B], [C, D]]) == (4, 5)


def test_fractional_ranks_share_places_in_a_tie():
    assert ordering_fractional_ranks([[A], [B, C], [D]]) == {A: 1, B: 2.5, C: 2.5, D: 4}


def test_krippendorff_alpha_hand_worked():
    # Two coders, three units with values (1, 1), (2, 3), (3, 2). Each unit has m = 2 values, so each
    # ordered pair weighs 1/(m-1) = 1: o11 = 2, o23 = o32 = 2; n1 = n2 = n3 = 2, n = 6.
    # Ordinal distances: d12 = (n1 + n2 - (n1 + n2)/2)^2 = 4, d23 = 4, d13 = (6 - 2)^2 = 16.
    # Observed: o23 d23 + o32 d32 = 16. Expected: 2 * (n1 n2 d12 + n2 n3 d23 + n1 n3 d13) = 2 * 96 = 192.
    # alpha = 1 - (n - 1) * 16 / 192 = 1 - 80/192 = 7/12.
    assert krippendorff_alpha_ordinal([[1, 1], [2, 3], [3, 2]]) == pytest.approx(7 / 12)


def test_krippendorff_alpha_matches_krippendorffs_published_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", 4 coders x 12 units with
    # missing values: alpha ordinal = 0.815.
    n = None
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    units = [[v for v in unit if v is not None] for unit in zip(*coders, strict=True)]
    assert krippendorff_alpha_ordinal(units) == pytest.approx(0.815, abs=5e-4)


def test_krippendorff_alpha_perfect_agreement_and_undefined_cases():
    assert krippendorff_alpha_ordinal([[1, 1], [2, 2], [3, 3]]) == 1.0
    assert krippendorff_alpha_ordinal([[1, 1], [1, 1]]) is None  # no variation at all
    assert krippendorff_alpha_ordinal([[1], [2]]) is None  # nothing pairable
