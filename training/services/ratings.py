"""Win rates and ratings from people's judgements of model versions: pure functions, no database.

A judgement compares two models on one prompt: the first won (1.0), lost (0.0) or tied (0.5). Ties
count half a win everywhere here, so a win rate is (wins + ties / 2) / (wins + losses + ties).

- ``wilson_interval``: the 95 % Wilson score interval of a rate (sound near 0 and 1 and for small n,
  unlike the normal approximation).
- ``bradley_terry``: strengths p with P(i beats j) = p_i / (p_i + p_j), fitted by Hunter's (2004)
  MM algorithm; ``elo_ratings`` puts them on the Elo scale (400 · log10, 1000 the mean of a group).
- ``ratings_with_intervals``: Elo-scaled Bradley–Terry ratings with a 95 % bootstrap interval that
  resamples prompts (a prompt's judgements stay together: several labelers judge the same answers).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile
ELO_BASE = 1000.0
ELO_SCALE = 400.0  # 400 Elo points = a 10:1 strength ratio (chess's convention, as in Chatbot Arena)

Item = Hashable
Outcome = tuple[Item, Item, float]  # (a, b, score of a): 1 a won, 0 b won, 0.5 a tie


def win_rate(*, wins: float, losses: float, ties: float = 0) -> float | None:
    """Return (wins + ties / 2) / (wins + losses + ties), or None with no judgement."""
    n = wins + losses + ties
    return (wins + ties / 2) / n if n else None


def wilson_interval(*, successes: float, n: float, z: float = Z_95) -> tuple[float, float] | None:
    """Return the Wilson score interval (low, high) of ``successes`` out of ``n`` (None when n is 0).

    Half successes (ties) are fine: the interval only needs the observed rate and n.
    """
    if n <= 0:
        return None
    rate = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (rate + z2 / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def judgement_outcomes(order: Sequence[Sequence[int]], *, model_of: dict[int, Item]) -> list[Outcome]:
    """Return what one evaluation judgement says about pairs of models.

    ``order`` is the judgement as answer ids, ``[[best], [the others…]]`` (the best beats each other
    answer; the others, not picked, say nothing about each other) or ``[[all]]`` (every pair ties).
    ``model_of`` maps an answer id to its model; answers of no known model are left out.
    """
    if len(order) == 1:
        answers = [model_of.get(answer) for answer in order[0]]
        return [(a, b, 0.5) for index, a in enumerate(answers) for b in answers[index + 1:]
                if a is not None and b is not None and a != b]
    best = [model_of.get(answer) for answer in order[0]]
    others = [model_of.get(answer) for group in order[1:] for answer in group]
    return [(a, b, 1.0) for a in best for b in others if a is not None and b is not None and a != b]


def pair_counts(outcomes: Iterable[Outcome]) -> dict[tuple[Item, Item], list[float]]:
    """Return {(a, b): [wins of a, wins of b, ties]} with (a, b) in a fixed order (sorted by repr)."""
    counts: dict[tuple[Item, Item], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for a, b, score in outcomes:
        if repr(a) > repr(b):
            a, b, score = b, a, 1.0 - score
        tally = counts[(a, b)]
        if score == 0.5:
            tally[2] += 1
        elif score > 0.5:
            tally[0] += 1
        else:
            tally[1] += 1
    return dict(counts)


def groups_of(pairs: Iterable[tuple[Item, Item]]) -> list[set[Item]]:
    """Split items into groups connected by comparisons: ratings compare only within a group."""
    parent: dict[Item, Item] = {}

    def root(item: Item) -> Item:
        parent.setdefault(item, item)
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[Item, set[Item]] = defaultdict(set)
    for item in list(parent):
        groups[root(item)].add(item)
    return sorted(groups.values(), key=lambda group: sorted(map(repr, group)))


def bradley_terry(
    counts: dict[tuple[Item, Item], Sequence[float]], *, prior_ties: float = 0.0, tolerance: float = 1e-10,
    max_iterations: int = 10_000,
) -> dict[Item, float]:
    """Fit Bradley–Terry strengths to {(a, b): (wins of a, wins of b, ties)} by Hunter's MM algorithm.

    A tie is half a win for each side. ``prior_ties`` adds that many virtual ties to every compared pair,
    which keeps a model that won (or lost) every judgement finite and pulls small samples toward
    equal strength. The strengths' geometric mean is 1 within each connected group of models.
    """
    wins: dict[Item, float] = defaultdict(float)  # W_i: wins of i, ties counting half
    games: dict[Item, dict[Item, float]] = defaultdict(lambda: defaultdict(float))  # n_ij
    for (a, b), (wins_a, wins_b, ties) in counts.items():
        ties += prior_ties
        wins[a] += wins_a + ties / 2
        wins[b] += wins_b + ties / 2
        games[a][b] += wins_a + wins_b + ties
        games[b][a] += wins_a + wins_b + ties
    items = sorted(games, key=repr)
    strength = dict.fromkeys(items, 1.0)
    for _ in range(max_iterations):
        updated = {}
        for i in items:
            denominator = sum(n / (strength[i] + strength[j]) for j, n in games[i].items() if n)
            updated[i] = max(wins[i] / denominator, 1e-12) if denominator else 1.0
        updated = _normalised(updated, games)
        change = max(abs(math.log(updated[i] / strength[i])) for i in items) if items else 0.0
        strength = updated
        if change < tolerance:
            break
    return strength


def _normalised(strength: dict[Item, float], games) -> dict[Item, float]:
    """Scale each connected group to a geometric mean of 1 (only ratios within a group mean anything)."""
    result = dict(strength)
    for group in groups_of((a, b) for a in games for b, n in games[a].items() if n):
        log_mean = sum(math.log(strength[i]) for i in group) / len(group)
        for i in group:
            result[i] = strength[i] / math.exp(log_mean)
    return result


def elo_ratings(strength: dict[Item, float]) -> dict[Item, float]:
    """Put Bradley–Terry strengths on the Elo scale: 1000 + 400 · log10(p)."""
    return {item: ELO_BASE + ELO_SCALE * math.log10(p) for item, p in strength.items()}


@dataclass(frozen=True)
class Rating:
    """A model's Elo-scaled Bradley–Terry rating, its 95 % bootstrap interval and what it rests on."""

    rating: float
    low: float | None  # None: too few prompts to resample
    high: float | None
    judgements: int  # judgements that compared it with another model
    group: int  # ratings compare only within one group (models judged against each other, directly or not)


def ratings_with_intervals(
    clusters: Sequence[Sequence[Outcome]], *, prior_ties: float = 1.0, resamples: int = 200, seed: int = 0,
) -> dict[Item, Rating]:
    """Return each model's rating from judgements grouped by prompt, with a 95 % percentile bootstrap interval.

    The bootstrap draws prompts with replacement (a prompt's judgements stay together) ``resamples``
    times with a fixed seed, so the same judgements always give the same interval. The prior's virtual
    ties sit on every pair compared in the full data, so each resample keeps the same groups.
    """
    outcomes = [outcome for cluster in clusters for outcome in cluster]
    counts = pair_counts(outcomes)
    if not counts:
        return {}
    point = elo_ratings(bradley_terry(counts, prior_ties=prior_ties))
    judged: dict[Item, int] = defaultdict(int)
    for a, b, _ in outcomes:
        judged[a] += 1
        judged[b] += 1
    group_of = {item: index for index, group in enumerate(groups_of(counts)) for item in group}
    samples: dict[Item, list[float]] = defaultdict(list)
    if len(clusters) >= 2:
        rng = random.Random(seed)
        for _ in range(resamples):
            drawn = [outcome for _ in clusters for outcome in clusters[rng.randrange(len(clusters))]]
            resampled = pair_counts(drawn)
            for pair in counts:  # a pair no drawn prompt compared keeps its prior, so the groups stay whole
                resampled.setdefault(pair, [0.0, 0.0, 0.0])
            for item, value in elo_ratings(bradley_terry(resampled, prior_ties=prior_ties, tolerance=1e-7)).items():
                samples[item].append(value)
    ratings = {}
    for item, value in point.items():
        low = high = None
        if samples[item]:
            ordered = sorted(samples[item])
            low, high = _percentile(ordered, 0.025), _percentile(ordered, 0.975)
        ratings[item] = Rating(rating=value, low=low, high=high, judgements=judged[item], group=group_of[item])
    return ratings


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)
