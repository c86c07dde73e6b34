"""Agreement between rankings: Kendall's tau-b and Krippendorff's alpha (ordinal). Pure functions."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import combinations
from statistics import fmean

from ranking.services.orderings import Ordering, ordering_pairs, ordering_rank_map


def kendall_tau_b(first: Ordering, second: Ordering) -> float | None:
    """Return Kendall's tau-b between two orderings of the same items (ties allowed), or None if undefined.

    Over every pair of items: P concordant, Q discordant, Tx tied only in ``first``, Ty tied only in
    ``second`` (pairs tied in both count nowhere); tau-b = (P - Q) / sqrt((P + Q + Tx) (P + Q + Ty)).
    It is undefined (None) when one ordering ties every item. Items missing from either are ignored.
    """
    rank_a, rank_b = ordering_rank_map(first), ordering_rank_map(second)
    items = sorted(set(rank_a) & set(rank_b))
    concordant = discordant = tied_a = tied_b = 0
    for x, y in combinations(items, 2):
        da = rank_a[x] - rank_a[y]
        db = rank_b[x] - rank_b[y]
        if da == 0 and db == 0:
            continue
        if da == 0:
            tied_a += 1
        elif db == 0:
            tied_b += 1
        elif (da > 0) == (db > 0):
            concordant += 1
        else:
            discordant += 1
    denominator = math.sqrt((concordant + discordant + tied_a) * (concordant + discordant + tied_b))
    if denominator == 0:
        return None
    return (concordant - discordant) / denominator


def mean_pairwise_tau_b(rankings: Sequence[Ordering]) -> float | None:
    """Return the mean Kendall tau-b over every two rankings (None with fewer than two defined pairs)."""
    values = [tau for a, b in combinations(rankings, 2) if (tau := kendall_tau_b(a, b)) is not None]
    return fmean(values) if values else None


def pairwise_accuracy(order: Ordering, *, reference: Ordering) -> tuple[int, int]:
    """Return (pairs ordered as in ``reference``, strict pairs of ``reference``).

    Gold accuracy: of the preferences the reference states, how many ``order`` states the same way
    (a tie where the reference prefers counts as a miss).
    """
    rank = ordering_rank_map(order)
    hits = total = 0
    for better, worse, _distance in ordering_pairs(reference):
        if better in rank and worse in rank:
            total += 1
            hits += rank[better] < rank[worse]
    return hits, total


def krippendorff_alpha_ordinal(units: Iterable[Sequence[float]]) -> float | None:
    """Return Krippendorff's alpha with the ordinal metric, or None when it is undefined.

    ``units`` holds, for every unit, the values the coders gave it (missing values left out).
    Units with fewer than two values are not pairable and are dropped. With the coincidence matrix
    o_ck = sum over units of (c-k pairs in the unit) / (m_u - 1), n_c = sum_k o_ck, n = sum n_c and
    the ordinal distance delta_ck = (sum of n_g for g from c to k) - (n_c + n_k) / 2:
    alpha = 1 - (n - 1) * sum o_ck delta_ck^2 / sum n_c n_k delta_ck^2.
    It is undefined when no unit is pairable or every pairable value is the same.
    """
    coincidences: dict[tuple[float, float], float] = defaultdict(float)
    for values in units:
        values = list(values)
        m = len(values)
        if m < 2:
            continue
        for i, j in ((i, j) for i in range(m) for j in range(m) if i != j):
            coincidences[(values[i], values[j])] += 1 / (m - 1)
    return krippendorff_alpha_from_coincidences(coincidences)


def krippendorff_alpha_from_coincidences(coincidences: dict[tuple[float, float], float]) -> float | None:
    """Return the ordinal alpha of a coincidence matrix ``{(c, k): o_ck}`` (see ``krippendorff_alpha_ordinal``).

    The matrix is a sum over units, so a project can keep it up to date task by task.
    """
    totals: Counter[float] = Counter()
    for (c, _k), weight in coincidences.items():
        totals[c] += weight
    n = sum(totals.values())
    values_sorted = sorted(totals)
    if len(values_sorted) < 2:
        return None
    cumulative = {}
    running = 0.0
    for value in values_sorted:
        running += totals[value]
        cumulative[value] = running

    def delta2(c: float, k: float) -> float:
        low, high = min(c, k), max(c, k)
        between = cumulative[high] - cumulative[low] + totals[low]  # sum of n_g for low <= g <= high
        return (between - (totals[low] + totals[high]) / 2) ** 2

    observed = sum(weight * delta2(c, k) for (c, k), weight in coincidences.items())
    expected = sum(totals[c] * totals[k] * delta2(c, k) for c in values_sorted for k in values_sorted)
    if expected == 0:
        return None
    return 1 - (n - 1) * observed / expected
