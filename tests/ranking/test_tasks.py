"""Celery tasks of ranking, run by a real worker process on the test broker and database."""

import pytest

from ranking.models import RankingTask, TaskStatus
from ranking.services.rankings import ranking_submit
from ranking.tasks import ranking_consensus_recompute, ranking_leases_purge_expired
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]


def test_worker_recomputes_consensus_and_purges_leases(celery_worker_process, project, make_member):
    project.rankings_per_task = 1
    project.save()
    task = RankingTaskFactory(project=project, answers=2)
    a, b = response_ids(task)
    ranking_submit(task=task, labeler=make_member(project), order=[[b], [a]])
    RankingTask.objects.filter(pk=task.pk).update(consensus_order=None, status=TaskStatus.OPEN)

    assert ranking_consensus_recompute.delay([task.pk]).get(timeout=60) == 1
    task.refresh_from_db()
    assert task.status == TaskStatus.COMPLETE and task.consensus_order == [[b], [a]]
    assert ranking_leases_purge_expired.delay().get(timeout=60) == 0
