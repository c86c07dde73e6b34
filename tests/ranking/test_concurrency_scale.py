"""Many labelers at once on a few thousand tasks: leasing, ranking, skipping and abandoning leases together.

The tasks are made with SQL ``generate_series`` (the counters start as a fresh import leaves them) and
every labeler works on its own connection; afterwards the rows must show what the guarantees say:
no task over-served, no (task, labeler) pair twice, every acknowledged ranking stored, and each
task's counters equal to its rows.
"""

import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.db.models import Count, F, Q
from django.utils import timezone

from ranking.models import Lease, Ranking, RankingTask
from ranking.services.leasing import leases_purge_expired, ranking_task_lease_next, ranking_task_skip
from ranking.services.rankings import ranking_submit
from tests.concurrency import run_at_once
from tests.ranking.bulk import tasks_bulk_insert

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = 3_000
LABELERS = 24
ROUNDS = 10


def _tasks(project) -> None:
    tasks_bulk_insert(project, count=TASKS, answers=3)


def test_labelers_racing_on_thousands_of_tasks_keep_every_guarantee(project, make_member):
    project.rankings_per_task = 2
    project.save()
    _tasks(project)
    labelers = [make_member(project) for _ in range(LABELERS)]

    def work(labeler):
        acknowledged = []
        for round_ in range(ROUNDS):
            lease = ranking_task_lease_next(project=project, labeler=labeler)
            assert lease is not None  # thousands of slots: nobody is told "nothing left"
            task = lease.task
            if round_ % 5 == 3:
                ranking_task_skip(task=task, labeler=labeler)
                continue
            if round_ % 5 == 4:  # walks away: the lease expires and its slot must come back
                Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
                continue
            ids = sorted(task.responses.values_list("pk", flat=True))
            result = ranking_submit(task=task, labeler=labeler, order=[[i] for i in ids],
                                    idempotency_key=str(uuid.uuid4()))
            acknowledged.append(result.ranking.pk)
        return acknowledged

    acknowledged = [pk for per_labeler in run_at_once(work, labelers, timeout=600) for pk in per_labeler]

    stored = list(Ranking.objects.values_list("pk", flat=True))
    assert sorted(acknowledged) == sorted(stored) and len(acknowledged) == LABELERS * ROUNDS * 3 // 5
    pairs = Counter(Ranking.objects.values_list("task_id", "labeler_id"))
    assert max(pairs.values()) == 1
    per_task = Counter(Ranking.objects.values_list("task_id", flat=True))
    assert max(per_task.values()) <= project.rankings_per_task
    # nearest to completion first: the labelers finished tasks rather than starting many
    assert Counter(per_task.values())[2] >= len(per_task) // 3

    leases_purge_expired()
    now = timezone.now()
    live = Q(leases__expires_at__gt=now)
    wrong = (
        RankingTask.objects.filter(project=project)
        .annotate(rankings_n=Count("rankings", distinct=True), leases_n=Count("leases", filter=live, distinct=True))
        .exclude(rankings_count=F("rankings_n"), leases_count=F("leases_n"))
    )
    assert not wrong.exists(), list(wrong.values("pk", "rankings_count", "rankings_n", "leases_count", "leases_n")[:5])
    assert not Lease.objects.exists()  # submitted, skipped or expired: no lease is left
