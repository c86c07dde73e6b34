"""Ranked pairs (Tideman) against examples worked out by hand in the comments."""

from ranking.services.consensus import majorities, pairwise_wins, ranked_pairs

A, B, C, D = 1, 2, 3, 4


def test_unanimous_rankings_are_their_own_consensus():
    order = [[C], [A], [D], [B]]
    assert ranked_pairs([order, order, order], items=[A, B, C, D]) == order


def test_condorcet_cycle_is_broken_at_its_weakest_majority():
    # 4 voters A>B>C, 3 voters B>C>A, 2 voters C>A>B.
    # wins: A>B 4+2=6 vs B>A 3 -> margin 3; B>C 4+3=7 vs 2 -> margin 5; C>A 3+2=5 vs 4 -> margin 1.
    # A cycle: A>B, B>C, C>A. Lock B>C (5), then A>B (3); C>A (1) would close the cycle -> skipped.
    rankings = [[[A], [B], [C]]] * 4 + [[[B], [C], [A]]] * 3 + [[[C], [A], [B]]] * 2
    assert [(m.winner, m.loser, m.margin) for m in majorities(pairwise_wins(rankings, items=[A, B, C]))] == [
        (B, C, 5), (A, B, 3), (C, A, 1),
    ]
    assert ranked_pairs(rankings, items=[A, B, C]) == [[A], [B], [C]]


def test_perfectly_balanced_cycle_is_broken_by_the_documented_tie_break():
    # One voter each: A>B>C, B>C>A, C>A>B. Every majority has margin 1 and 2 votes:
    # A>B (A,C voters), B>C (A,B voters), C>A (B,C voters). Equal margins and votes -> by winner id:
    # lock A>B (winner 1), then B>C (winner 2); C>A (winner 3) closes the cycle -> skipped.
    rankings = [[[A], [B], [C]], [[B], [C], [A]], [[C], [A], [B]]]
    assert ranked_pairs(rankings, items=[A, B, C]) == [[A], [B], [C]]
    # the same rankings in another order give the same result: deterministic
    assert ranked_pairs(list(reversed(rankings)), items=[C, B, A]) == [[A], [B], [C]]


def test_ties_in_a_ranking_count_as_no_preference():
    # r1: A > {B, C} (tie) > D ; r2: B > A > C > D.
    # A vs B: r1 A>B, r2 B>A -> 1:1, no majority.   A vs C: 2:0 -> A>C margin 2.
    # B vs C: r1 tie, r2 B>C -> 1:0, B>C margin 1.  every X vs D: 2:0 -> margin 2.
    # Locking order (margin, votes desc, then ids): A>C(2), A>D(2), B>D(2), C>D(2), B>C(1).
    # Layers: nothing beats A or B -> [A, B]; then C; then D.
    rankings = [[[A], [B, C], [D]], [[B], [A], [C], [D]]]
    wins = pairwise_wins(rankings, items=[A, B, C, D])
    assert wins[(B, C)] == 1 and wins[(C, B)] == 0
    assert wins[(A, B)] == wins[(B, A)] == 1
    assert ranked_pairs(rankings, items=[A, B, C, D]) == [[A, B], [C], [D]]


def test_all_tied_rankings_give_a_single_tied_group():
    assert ranked_pairs([[[A, B, C]], [[C, B, A]]], items=[A, B, C]) == [[A, B, C]]


def test_no_rankings_tie_everything_and_no_items_give_nothing():
    assert ranked_pairs([], items=[B, A]) == [[A, B]]
    assert ranked_pairs([], items=[]) == []


def test_two_opposite_rankings_cancel_out_into_a_tie():
    assert ranked_pairs([[[A], [B]], [[B], [A]]], items=[A, B]) == [[A, B]]


def test_equal_margins_and_votes_lock_in_id_order():
    # 5 rankings over A, B, C, D:
    #   2 x A>B>C>D, 1 x B>A>D>C, 1 x C>D>A>B, 1 x D>C>B>A
    # A>B: votes 3 (r1,r1,r3) vs 2 -> margin 1, votes 3
    # C>D: votes 3 (r1,r1,r3) vs 2 -> margin 1, votes 3
    # A>C: 3 (2xr1, r2) vs 2 -> margin 1 ; A>D: 3 vs 2 -> margin 1 ; B>C: 3 vs 2 ; B>D: 3 vs 2.
    # Everything has margin 1 and 3 votes, so ids decide: A>B, A>C, A>D, B>C, B>D, C>D -> A, B, C, D.
    rankings = [[[A], [B], [C], [D]]] * 2 + [[[B], [A], [D], [C]], [[C], [D], [A], [B]], [[D], [C], [B], [A]]]
    assert ranked_pairs(rankings, items=[A, B, C, D]) == [[A], [B], [C], [D]]
