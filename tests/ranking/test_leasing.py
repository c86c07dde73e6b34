"""Which task a labeler is served, and when."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Role
from ranking.models import Lease
from ranking.services.leasing import (
    gold_is_due,
    leases_purge_expired,
    ranking_task_lease_next,
    ranking_task_skip,
)
from ranking.services.rankings import ranking_submit
from ranking.services.tasks import (
    ResponseSpec,
    ranking_task_create,
    ranking_task_disable,
    ranking_task_gold_set,
)
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = pytest.mark.django_db


def _lease(project, labeler):
    lease = ranking_task_lease_next(project=project, labeler=labeler)
    return lease.task if lease else None


def _rank(task, labeler):
    ranking_submit(task=task, labeler=labeler, order=[[i] for i in response_ids(task)])


def test_reloading_gives_the_same_task_with_a_fresh_expiry(project, make_member):
    RankingTaskFactory.create_batch(3, project=project)
    labeler = make_member(project)
    first = ranking_task_lease_next(project=project, labeler=labeler)
    Lease.objects.filter(pk=first.pk).update(expires_at=timezone.now() + timedelta(minutes=1))
    again = ranking_task_lease_next(project=project, labeler=labeler)
    assert again.task == first.task
    assert again.expires_at > timezone.now() + timedelta(minutes=project.lease_minutes - 1)


def test_tasks_nearest_completion_come_first(project, make_member):
    project.rankings_per_task = 3
    project.save()
    _older, newer = RankingTaskFactory(project=project), RankingTaskFactory(project=project)
    _rank(newer, make_member(project))
    assert _lease(project, make_member(project)) == newer


def test_never_one_i_ranked_or_skipped_or_wrote(project, make_member):
    labeler = make_member(project)
    ranked, skipped = RankingTaskFactory(project=project), RankingTaskFactory(project=project)
    mine = ranking_task_create(
        project=project, context=[{"role": "user", "content": "q"}],
        responses=[ResponseSpec("by me", "human", labeler), ResponseSpec("model", "m")],
    )
    _rank(ranked, labeler)
    ranking_task_skip(task=skipped, labeler=labeler, reason="I don't know this topic")
    assert _lease(project, labeler) is None
    assert _lease(project, make_member(project)) in {ranked, skipped, mine}


def test_skip_releases_the_lease_and_serves_the_next(project, make_member):
    project.rankings_per_task = 1
    project.save()
    first, second = RankingTaskFactory(project=project), RankingTaskFactory(project=project)
    labeler = make_member(project)
    assert _lease(project, labeler) == first
    ranking_task_skip(task=first, labeler=labeler)
    assert _lease(project, labeler) == second
    assert _lease(project, make_member(project)) == first  # the skipped task is free for others


def test_a_task_is_not_leased_beyond_its_required_rankings_until_a_lease_expires(project, make_member):
    project.rankings_per_task = 2
    project.save()
    task = RankingTaskFactory(project=project)
    one, two, three = make_member(project), make_member(project), make_member(project)
    assert _lease(project, one) == task
    assert _lease(project, two) == task
    assert _lease(project, three) is None
    Lease.objects.filter(labeler=one).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _lease(project, three) == task


def test_disabled_and_archived_serve_nothing(project, make_member):
    task = RankingTaskFactory(project=project)
    ranking_task_disable(task=task)
    assert _lease(project, make_member(project)) is None
    ranking_task_disable(task=task, disabled=False)
    project.is_archived = True
    project.save()
    assert _lease(project, make_member(project)) is None


def test_gold_is_mixed_in_at_the_project_rate(project, make_member):
    project.gold_rate = 0.25
    project.rankings_per_task = 1
    project.save()
    gold = RankingTaskFactory.create_batch(3, project=project, answers=2)
    for task in gold:
        ranking_task_gold_set(task=task, order=[[i] for i in response_ids(task)])
    RankingTaskFactory.create_batch(12, project=project, answers=2)
    labeler = make_member(project)
    served = []
    for _ in range(12):
        task = _lease(project, labeler)
        served.append(task.is_gold)
        _rank(task, labeler)
    # every fourth task is gold: the 4th, 8th and 12th
    assert served == [False, False, False, True] * 3


def test_gold_is_due_formula(project, make_member):
    project.gold_rate = 0.0
    assert not gold_is_due(project=project, labeler=make_member(project))
    project.gold_rate = 1.0
    assert gold_is_due(project=project, labeler=make_member(project))


def test_gold_tasks_are_served_to_every_labeler_once_regardless_of_rankings_per_task(project, make_member):
    project.gold_rate = 1.0
    project.rankings_per_task = 1
    project.save()
    task = RankingTaskFactory(project=project, answers=2)
    ranking_task_gold_set(task=task, order=[[i] for i in response_ids(task)])
    for _ in range(3):
        labeler = make_member(project)
        assert _lease(project, labeler) == task
        _rank(task, labeler)
        assert _lease(project, labeler) is None


def test_when_no_gold_is_left_ordinary_tasks_are_served(project, make_member):
    project.gold_rate = 1.0
    project.save()
    task = RankingTaskFactory(project=project)
    assert _lease(project, make_member(project, Role.REVIEWER)) == task


def test_purge_removes_only_expired_leases(project, make_member):
    RankingTaskFactory.create_batch(2, project=project)
    live = ranking_task_lease_next(project=project, labeler=make_member(project))
    dead = ranking_task_lease_next(project=project, labeler=make_member(project))
    Lease.objects.filter(pk=dead.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert leases_purge_expired() == 1
    assert list(Lease.objects.values_list("pk", flat=True)) == [live.pk]
