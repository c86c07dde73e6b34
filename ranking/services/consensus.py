"""Ranked pairs (Tideman): the consensus ordering of several rankings with ties. Pure functions.

The rule, step by step (docs/ranking.md explains it with an example):
1. For every two answers a, b count the rankings that put a strictly above b (``wins[a][b]``).
   A ranking that ties a and b says nothing about that pair.
2. Every pair with ``wins[a][b] > wins[b][a]`` is a majority a > b with margin
   ``wins[a][b] - wins[b][a]``; equal counts make no majority.
3. Sort the majorities by margin (largest first), then by winning votes ``wins[a][b]`` (largest
   first), then by the winner's id and then the loser's id (smallest first). The last two keys make
   the result deterministic when margins are equal and when they form a cycle.
4. Lock the majorities in that order, skipping any that would close a cycle with those already locked.
5. The consensus is the locked graph read in layers: the first group holds the answers nothing
   locked beats, the next group those beaten only by answers of earlier groups, and so on. Answers of
   one group have no locked preference between them, so they tie in the consensus.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ranking.services.orderings import Ordering, ordering_rank_map


@dataclass(frozen=True)
class Majority:
    winner: int
    loser: int
    margin: int
    votes: int


def pairwise_wins(rankings: Iterable[Ordering], *, items: Sequence[int]) -> dict[tuple[int, int], int]:
    """Return {(a, b): number of rankings placing a strictly above b} for every ordered pair of ``items``."""
    wins = {(a, b): 0 for a in items for b in items if a != b}
    for order in rankings:
        rank = ordering_rank_map(order)
        for a in items:
            for b in items:
                if a != b and a in rank and b in rank and rank[a] < rank[b]:
                    wins[(a, b)] += 1
    return wins


def majorities(wins: dict[tuple[int, int], int]) -> list[Majority]:
    """Return the pairwise majorities in locking order (margin, then votes, descending; then ids ascending)."""
    found = [
        Majority(winner=a, loser=b, margin=count - wins[(b, a)], votes=count)
        for (a, b), count in wins.items()
        if count > wins[(b, a)]
    ]
    return sorted(found, key=lambda m: (-m.margin, -m.votes, m.winner, m.loser))


def ranked_pairs(rankings: Iterable[Ordering], *, items: Sequence[int]) -> list[list[int]]:
    """Return the ranked-pairs consensus of ``rankings`` over ``items`` as groups, best first.

    With no ranking, or no majority at all, every item ties in a single group.
    """
    items = sorted(set(items))
    if not items:
        return []
    locked: dict[int, set[int]] = {item: set() for item in items}  # winner -> losers
    for majority in majorities(pairwise_wins(list(rankings), items=items)):
        if not _reaches(locked, start=majority.loser, goal=majority.winner):
            locked[majority.winner].add(majority.loser)
    return _layers(locked)


def _reaches(graph: dict[int, set[int]], *, start: int, goal: int) -> bool:
    stack, seen = [start], {start}
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for nxt in graph[node] - seen:
            seen.add(nxt)
            stack.append(nxt)
    return False


def _layers(graph: dict[int, set[int]]) -> list[list[int]]:
    beaten_by = {item: 0 for item in graph}
    for losers in graph.values():
        for loser in losers:
            beaten_by[loser] += 1
    remaining = set(graph)
    layers: list[list[int]] = []
    while remaining:
        layer = sorted(item for item in remaining if beaten_by[item] == 0)
        layers.append(layer)
        for item in layer:
            remaining.discard(item)
            for loser in graph[item]:
                beaten_by[loser] -= 1
    return layers
