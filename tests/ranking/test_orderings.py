import pytest

from ranking.services.orderings import OrderingError, ordering_check, ordering_pairs


def test_a_k4_ranking_with_one_tie_gives_five_pairs_with_group_distances():
    assert list(ordering_pairs([[1], [2, 3], [4]])) == [(1, 2, 1), (1, 3, 1), (1, 4, 2), (2, 4, 1), (3, 4, 1)]


@pytest.mark.parametrize(
    ("order", "message"),
    [
        ([[1], [2]], "misses these answers of the task: 3"),
        ([[1], [2, 2], [3]], "more than once: 2"),
        ([[1], [2], [3], [99]], "not answers of this task: 99"),
        ([[1], [], [2, 3]], "order[1] must be a non-empty list"),
        ([1, 2, 3], "order[0] must be a non-empty list"),
        ([["1"], [2], [3]], "not a response id"),
        ([[True], [2], [3]], "not a response id"),
        ({"a": 1}, "must be a non-empty list of groups"),
        ([], "must be a non-empty list of groups"),
    ],
)
def test_bad_orderings_say_what_is_wrong(order, message):
    with pytest.raises(OrderingError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ordering_check(order, item_ids=[1, 2, 3])


def test_a_complete_ordering_passes():
    assert ordering_check([[3], [1, 2]], item_ids=[1, 2, 3]) == [[3], [1, 2]]
