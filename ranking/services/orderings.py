"""Orderings with ties: pure helpers shared by consensus, agreement, submission and export.

An ordering is a list of groups of item ids, best first: ``[[a], [b, c], [d]]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import combinations

Ordering = Sequence[Sequence[int]]


class OrderingError(ValueError):
    """The ordering is not a complete ordering of exactly the expected items; the message says why."""


def ordering_check(order: object, *, item_ids: Iterable[int]) -> list[list[int]]:
    """Return ``order`` as a list of lists of ints, or raise OrderingError naming what is wrong.

    It must hold every id of ``item_ids`` exactly once, in non-empty groups, and nothing else.
    """
    expected = set(item_ids)
    if not isinstance(order, list) or not order:
        raise OrderingError("order must be a non-empty list of groups of response ids, best first, e.g. [[3], [1, 2]].")
    groups: list[list[int]] = []
    seen: set[int] = set()
    duplicated: list[int] = []
    foreign: list[object] = []
    for index, group in enumerate(order):
        if not isinstance(group, list) or not group:
            raise OrderingError(f"order[{index}] must be a non-empty list of response ids.")
        checked = []
        for item in group:
            if isinstance(item, bool) or not isinstance(item, int):
                raise OrderingError(f"order[{index}] holds {item!r}, which is not a response id (an integer).")
            if item not in expected:
                foreign.append(item)
            elif item in seen:
                duplicated.append(item)
            seen.add(item)
            checked.append(item)
        groups.append(checked)
    if foreign:
        raise OrderingError(f"order holds ids that are not answers of this task: {_ids(foreign)}.")
    if duplicated:
        raise OrderingError(f"order holds these answers more than once: {_ids(duplicated)}.")
    missing = expected - seen
    if missing:
        raise OrderingError(f"order misses these answers of the task: {_ids(missing)}; rank every answer.")
    return groups


def _ids(ids: Iterable[object]) -> str:
    return ", ".join(str(i) for i in sorted(set(ids), key=str))


def ordering_rank_map(order: Ordering) -> dict[int, int]:
    """Return {item: group index}, 0 for the best group."""
    return {item: index for index, group in enumerate(order) for item in group}


def ordering_fractional_ranks(order: Ordering) -> dict[int, float]:
    """Return {item: rank} with ranks 1..n and tied items sharing the mean of their places (1, 2.5, 2.5, 4)."""
    ranks: dict[int, float] = {}
    place = 1
    for group in order:
        mean = place + (len(group) - 1) / 2
        for item in group:
            ranks[item] = mean
        place += len(group)
    return ranks


def ordering_pairs(order: Ordering) -> Iterator[tuple[int, int, int]]:
    """Yield (better, worse, group distance) for every pair the ordering prefers; tied pairs yield nothing.

    Pairs come best first, then by their place in the groups, so the output is deterministic.
    """
    for (upper_index, upper), (lower_index, lower) in combinations(enumerate(order), 2):
        for better in upper:
            for worse in lower:
                yield better, worse, lower_index - upper_index


def ordering_normalise(order: Ordering) -> list[list[int]]:
    """Return the ordering with each group's ids sorted (the canonical form stored and compared)."""
    return [sorted(group) for group in order]
