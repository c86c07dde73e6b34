"""Many labelers at once on PostgreSQL: no task is over-assigned and no acknowledged ranking is lost or doubled."""

import uuid
from collections import Counter

import pytest

from ranking.models import Lease, Ranking
from ranking.services.leasing import ranking_task_lease_next
from ranking.services.rankings import ranking_submit
from tests.concurrency import run_at_once
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = pytest.mark.django_db(transaction=True)

LABELERS = 24


def test_simultaneous_leases_never_exceed_rankings_per_task(project, make_member):
    project.rankings_per_task = 2
    project.save()
    tasks = RankingTaskFactory.create_batch(5, project=project, answers=3)
    labelers = [make_member(project) for _ in range(LABELERS)]

    def lease(labeler):
        got = ranking_task_lease_next(project=project, labeler=labeler)
        return got.task_id if got else None

    served = run_at_once(lease, labelers)
    per_task = Counter(task_id for task_id in served if task_id is not None)
    assert per_task == {task.pk: 2 for task in tasks}  # every slot given, none twice
    assert served.count(None) == LABELERS - 10
    assert Lease.objects.count() == 10


def test_labelers_ranking_at_once_fill_every_task_exactly_and_lose_no_acknowledged_ranking(project, make_member):
    project.rankings_per_task = 3
    project.save()
    tasks = RankingTaskFactory.create_batch(10, project=project, answers=4)
    labelers = [make_member(project) for _ in range(LABELERS)]

    def work(labeler):
        acknowledged = []
        while True:
            lease = ranking_task_lease_next(project=project, labeler=labeler)
            if lease is None:
                return acknowledged
            ids = response_ids(lease.task)
            key = str(uuid.uuid4())
            result = ranking_submit(task=lease.task, labeler=labeler, order=[[i] for i in reversed(ids)],
                                    idempotency_key=key)
            # a client retry of the same submission (lost response) must not add a second ranking
            retry = ranking_submit(task=lease.task, labeler=labeler, order=[[i] for i in ids], idempotency_key=key)
            assert retry.ranking.pk == result.ranking.pk and not retry.created
            acknowledged.append(result.ranking.pk)

    results = run_at_once(work, labelers)
    acknowledged = [pk for per_labeler in results for pk in per_labeler]
    stored = list(Ranking.objects.values_list("pk", flat=True))
    assert len(acknowledged) == len(set(acknowledged)) == 30
    assert sorted(acknowledged) == sorted(stored)
    per_task = Counter(Ranking.objects.values_list("task_id", flat=True))
    assert per_task == {task.pk: 3 for task in tasks}
    assert not Lease.objects.exists()
    for task in tasks:
        task.refresh_from_db()
        assert task.status == "complete" and task.consensus_order is not None


def test_the_same_submission_sent_twice_at_once_is_stored_once(project, make_member):
    task = RankingTaskFactory(project=project, answers=4)
    labeler = make_member(project)
    order = [[i] for i in response_ids(task)]

    def submit(labeler):
        return ranking_submit(task=task, labeler=labeler, order=order, idempotency_key="same-click").ranking.pk

    results = run_at_once(submit, [labeler] * 8)
    assert len(set(results)) == 1
    assert Ranking.objects.count() == 1


def test_one_labeler_opening_the_rank_page_in_several_tabs_at_once_holds_one_lease(project, make_member):
    RankingTaskFactory.create_batch(5, project=project, answers=3)
    labeler = make_member(project)

    def lease(labeler):
        return ranking_task_lease_next(project=project, labeler=labeler).task_id

    served = run_at_once(lease, [labeler] * 6)  # six tabs
    assert len(set(served)) == 1  # every tab shows the same task
    assert Lease.objects.filter(labeler=labeler).count() == 1  # and no other task sits leased to nobody's use


def test_a_lease_renewed_as_it_expires_is_not_also_given_to_another_labeler(project, make_member):
    # A reloads its task the instant its lease runs out while B asks for a task: the renewal and B's
    # `next` must not both win. A's renewal is held open (its transaction not yet committed) while B's
    # `next` runs with A's old expiry past; B must pass over the task, not take the slot A keeps.
    import threading
    import time
    from datetime import timedelta

    from django.db import connection, transaction
    from django.utils import timezone

    from ranking.services.leasing import _lease_held_renew

    project.rankings_per_task = 1
    project.save()
    task = RankingTaskFactory(project=project, answers=2)
    a, b = make_member(project), make_member(project)
    Lease.objects.create(task=task, labeler=a, expires_at=timezone.now() + timedelta(seconds=1))
    served = {}

    def b_asks():
        served["b"] = ranking_task_lease_next(project=project, labeler=b)
        connection.close()

    with transaction.atomic():
        now = timezone.now()
        renewed = _lease_held_renew(project=project, labeler=a, now=now, expires_at=now + timedelta(minutes=30))
        assert renewed is not None
        time.sleep(1.5)  # A's old expiry is past when B asks
        asker = threading.Thread(target=b_asks)
        asker.start()
        asker.join(timeout=1.0)  # B passes over the locked task at once, or waits for A's commit
    asker.join(timeout=30)
    assert not asker.is_alive()
    assert served["b"] is None  # the one slot is A's
    live = Lease.objects.filter(task=task, expires_at__gt=timezone.now())
    assert [lease.labeler_id for lease in live] == [a.pk]
