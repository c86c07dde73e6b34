"""Submitting rankings, consensus on completion, gold, task creation."""

import pytest
from django.core.exceptions import ValidationError

from annotation.models import Role
from config.exceptions import ApplicationError, ConflictError
from ranking.models import Ranking, TaskStatus
from ranking.services.leasing import ranking_task_lease_next
from ranking.services.rankings import ranking_submit
from ranking.services.tasks import (
    ResponseSpec,
    ranking_task_create,
    ranking_task_disable,
    ranking_task_gold_set,
    ranking_tasks_consensus_recompute,
)
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = pytest.mark.django_db


def _submit(task, labeler, order, **kwargs):
    return ranking_submit(task=task, labeler=labeler, order=order, **kwargs)


def test_create_task_keeps_context_answers_and_gold_in_response_ids(project, make_member):
    manager = make_member(project, Role.MANAGER)
    task = ranking_task_create(
        project=project,
        context=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
        responses=[ResponseSpec("Paris.", "m1"), ResponseSpec("Lyon.", "m1"), ResponseSpec("I wrote this", "human", manager)],
        is_gold=True,
        gold_positions=[[0], [2], [1]],
        created_by=manager,
    )
    ids = response_ids(task)
    assert task.gold_order == [[ids[0]], [ids[2]], [ids[1]]]
    assert task.responses.get(pk=ids[2]).created_by == manager
    assert task.status == TaskStatus.OPEN


@pytest.mark.parametrize(
    ("context", "responses", "message"),
    [
        ([{"role": "assistant", "content": "hi"}], ["a", "b"], "must end with a user"),
        ([], ["a", "b"], "non-empty list"),
        ([{"role": "robot", "content": "hi"}], ["a", "b"], "role must be one of"),
        ([{"role": "user", "content": "hi"}], ["only one"], "2 to 9 answers"),
        ([{"role": "user", "content": "hi"}], ["a"] * 10, "2 to 9 answers"),
        ([{"role": "user", "content": "hi"}], ["a", "  "], "responses[1]"),
    ],
)
def test_create_refuses_bad_tasks_with_a_clear_message(project, context, responses, message):
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ranking_task_create(project=project, context=context, responses=[ResponseSpec(r) for r in responses])


def test_ranking_is_stored_normalised_with_flags_scores_and_time(project, make_member):
    task = RankingTaskFactory(project=project, answers=4)
    a, b, c, d = response_ids(task)
    labeler = make_member(project)
    result = _submit(
        task, labeler, [[c], [b, a], [d]],
        flags={str(d): ["hallucination", "harmful", "harmful"]}, scores={str(c): 7, str(d): 1},
        time_spent_ms=12_345, all_bad=False,
    )
    ranking = result.ranking
    assert result.created
    assert ranking.order == [[c], [a, b], [d]]
    assert ranking.flags == {str(d): ["harmful", "hallucination"]} or ranking.flags == {str(d): ["hallucination", "harmful"]}
    assert ranking.scores == {str(c): 7, str(d): 1}
    assert ranking.time_spent_ms == 12_345


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flags": {"999": ["harmful"]}}, "999 is not an answer of this task"),
        ({"flags": {"FIRST": ["nonsense"]}}, "unknown flag"),
        ({"scores": {"FIRST": 8}}, "integer from 1 to 7"),
        ({"scores": {"FIRST": 0}}, "integer from 1 to 7"),
        ({"scores": {"FIRST": "5"}}, "integer from 1 to 7"),
        ({"flags": ["harmful"]}, "flags must be an object"),
        ({"time_spent_ms": -1}, "non-negative"),
    ],
)
def test_bad_flags_scores_and_times_are_refused(project, make_member, kwargs, message):
    task = RankingTaskFactory(project=project, answers=2)
    first, second = response_ids(task)
    for field in ("flags", "scores"):
        if isinstance(kwargs.get(field), dict):
            kwargs[field] = {k.replace("FIRST", str(first)): v for k, v in kwargs[field].items()}
    with pytest.raises(ApplicationError, match=message):
        _submit(task, make_member(project), [[first], [second]], **kwargs)
    assert not Ranking.objects.exists()


def test_idempotency_key_retry_returns_the_first_ranking(project, make_member):
    task = RankingTaskFactory(project=project, answers=2)
    a, b = response_ids(task)
    labeler = make_member(project)
    first = _submit(task, labeler, [[a], [b]], idempotency_key="key-1")
    again = _submit(task, labeler, [[b], [a]], idempotency_key="key-1")
    assert not again.created
    assert again.ranking.pk == first.ranking.pk
    assert again.ranking.order == [[a], [b]]
    assert Ranking.objects.count() == 1


def test_same_key_on_another_task_is_a_conflict(project, make_member):
    labeler = make_member(project)
    one, two = RankingTaskFactory(project=project, answers=2), RankingTaskFactory(project=project, answers=2)
    _submit(one, labeler, [[i] for i in response_ids(one)], idempotency_key="k")
    with pytest.raises(ConflictError, match="already used"):
        _submit(two, labeler, [[i] for i in response_ids(two)], idempotency_key="k")


def test_ranking_twice_without_key_is_a_conflict(project, make_member):
    task = RankingTaskFactory(project=project, answers=2)
    labeler = make_member(project)
    _submit(task, labeler, [[i] for i in response_ids(task)])
    with pytest.raises(ConflictError, match="already ranked"):
        _submit(task, labeler, [[i] for i in response_ids(task)])


def test_the_last_required_ranking_completes_the_task_with_consensus_and_agreement(project, make_member):
    project.rankings_per_task = 3
    project.save()
    task = RankingTaskFactory(project=project, answers=3)
    a, b, c = response_ids(task)
    orders = [[[a], [b], [c]], [[a], [c], [b]], [[b], [a], [c]]]
    for number, order in enumerate(orders):
        _submit(task, make_member(project), order)
        task.refresh_from_db()
        if number < 2:
            assert task.status == TaskStatus.OPEN and task.consensus_order is None
    # A>B 2:1, A>C 3:0, B>C 2:1 -> A, B, C; pairwise taus: (1/3, 1/3, -1/3) -> mean 1/9
    assert task.status == TaskStatus.COMPLETE
    assert task.consensus_order == [[a], [b], [c]]
    assert task.agreement == pytest.approx(1 / 9)


def test_a_complete_task_takes_no_more_rankings(project, make_member):
    project.rankings_per_task = 1
    project.save()
    task = RankingTaskFactory(project=project, answers=2)
    order = [[i] for i in response_ids(task)]
    _submit(task, make_member(project), order)
    with pytest.raises(ConflictError, match="already has the rankings it needs"):
        _submit(task, make_member(project), order)


def test_a_task_full_of_others_leases_refuses_a_labeler_without_lease(project, make_member):
    project.rankings_per_task = 1
    project.save()
    task = RankingTaskFactory(project=project, answers=2)
    holder = make_member(project)
    assert ranking_task_lease_next(project=project, labeler=holder).task == task
    with pytest.raises(ConflictError):
        _submit(task, make_member(project), [[i] for i in response_ids(task)])
    _submit(task, holder, [[i] for i in response_ids(task)])  # the holder may
    assert not task.leases.exists()


def test_nobody_ranks_answers_they_wrote(project, make_member):
    author = make_member(project)
    task = ranking_task_create(
        project=project, context=[{"role": "user", "content": "q"}],
        responses=[ResponseSpec("mine", "human", author), ResponseSpec("model", "m")],
    )
    with pytest.raises(ApplicationError, match="You wrote one of these answers"):
        _submit(task, author, [[i] for i in response_ids(task)])


def test_disabled_tasks_take_no_rankings(project, make_member):
    task = RankingTaskFactory(project=project, answers=2)
    ranking_task_disable(task=task)
    with pytest.raises(ConflictError, match="taken out of the queue"):
        _submit(task, make_member(project), [[i] for i in response_ids(task)])


def test_gold_tasks_stay_open_and_get_a_consensus_from_the_first_ranking(project, make_member):
    project.rankings_per_task = 1
    project.save()
    task = RankingTaskFactory(project=project, answers=2)
    a, b = response_ids(task)
    ranking_task_gold_set(task=task, order=[[a], [b]])
    for _ in range(3):
        _submit(task, make_member(project), [[b], [a]])
    task.refresh_from_db()
    assert task.status == TaskStatus.OPEN and task.is_gold and task.gold_order == [[a], [b]]
    assert task.consensus_order == [[b], [a]]


def test_gold_order_must_be_complete_and_not_all_tied(project):
    task = RankingTaskFactory(project=project, answers=2)
    a, b = response_ids(task)
    with pytest.raises(ApplicationError, match="misses"):
        ranking_task_gold_set(task=task, order=[[a]])
    with pytest.raises(ApplicationError, match="not all tied"):
        ranking_task_gold_set(task=task, order=[[a, b]])


def test_recompute_follows_a_changed_rankings_per_task(project, make_member):
    project.rankings_per_task = 2
    project.save()
    task = RankingTaskFactory(project=project, answers=2)
    _submit(task, make_member(project), [[i] for i in response_ids(task)])
    task.refresh_from_db()
    assert task.status == TaskStatus.OPEN
    project.rankings_per_task = 1
    project.save()
    assert ranking_tasks_consensus_recompute(task_ids=[task.pk]) == 1
    task.refresh_from_db()
    assert task.status == TaskStatus.COMPLETE and task.consensus_order == [[i] for i in response_ids(task)]
