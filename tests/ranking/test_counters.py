"""Each task keeps its rankings and live leases on its row; expired leases give their slot back."""

import importlib
import io
import json
from datetime import timedelta

import pytest
from django.apps import apps
from django.conf import settings
from django.utils import timezone

from ranking.models import Lease, RankingTask
from ranking.services.imports import ranking_tasks_import
from ranking.services.leasing import leases_purge_expired, ranking_task_lease_next, ranking_task_skip
from ranking.services.rankings import ranking_submit
from ranking.services.tasks import ranking_tasks_consensus_recompute
from ranking.tasks import ranking_leases_purge_expired
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = pytest.mark.django_db


def _counts(task) -> tuple[int, int]:
    task.refresh_from_db()
    return task.rankings_count, task.leases_count


def _expire(lease) -> None:
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def test_lease_submit_and_skip_keep_the_counts_on_the_task(project, make_member):
    project.rankings_per_task = 2
    project.save()
    task = RankingTaskFactory(project=project)
    one, two = make_member(project), make_member(project)
    assert ranking_task_lease_next(project=project, labeler=one).task == task
    assert _counts(task) == (0, 1)
    ranking_submit(task=task, labeler=one, order=[[i] for i in response_ids(task)])
    assert _counts(task) == (1, 0)
    assert ranking_task_lease_next(project=project, labeler=two).task == task
    assert _counts(task) == (1, 1)
    ranking_task_skip(task=task, labeler=two)
    assert _counts(task) == (1, 0)


def test_an_expired_lease_keeps_its_slot_until_reclaimed_then_gives_it_back(project, make_member):
    project.rankings_per_task = 1
    project.save()
    task = RankingTaskFactory(project=project)
    one, two = make_member(project), make_member(project)
    _expire(ranking_task_lease_next(project=project, labeler=one))
    assert _counts(task) == (0, 1)  # the row still says taken: the walk passes over it
    assert leases_purge_expired() == 1  # beat's job
    assert _counts(task) == (0, 0)
    assert ranking_task_lease_next(project=project, labeler=two).task == task


def test_next_reclaims_its_projects_expired_leases_itself_when_beat_has_not(project, make_member):
    project.rankings_per_task = 1
    project.save()
    task = RankingTaskFactory(project=project)
    one, two = make_member(project), make_member(project)
    _expire(ranking_task_lease_next(project=project, labeler=one))
    assert ranking_task_lease_next(project=project, labeler=two).task == task
    assert _counts(task) == (0, 1)
    assert list(Lease.objects.values_list("labeler", flat=True)) == [two.pk]


def test_counts_are_checked_against_the_rows_under_the_lock(project, make_member):
    """A count that is wrong on the row (a path that forgot it) never lets a task take one labeler too many."""
    project.rankings_per_task = 1
    project.save()
    task = RankingTaskFactory(project=project)
    ranking_task_lease_next(project=project, labeler=make_member(project))
    RankingTask.objects.filter(pk=task.pk).update(leases_count=0)  # wrong: one live lease exists
    assert ranking_task_lease_next(project=project, labeler=make_member(project)) is None
    assert Lease.objects.count() == 1


def test_consensus_recompute_and_imported_preferences_set_the_rankings_count(project, make_member):
    project.rankings_per_task = 2
    project.save()
    line = {"chosen": "\n\nHuman: 2+2?\n\nAssistant: 4.", "rejected": "\n\nHuman: 2+2?\n\nAssistant: 5."}
    ranking_tasks_import(project=project, file=io.BytesIO(json.dumps(line).encode() + b"\n"), format="hh-rlhf",
                         created_by=None)
    imported = RankingTask.objects.get()
    assert _counts(imported) == (1, 0)
    RankingTask.objects.filter(pk=imported.pk).update(rankings_count=7)
    ranking_tasks_consensus_recompute(task_ids=[imported.pk])
    assert _counts(imported) == (1, 0)


def test_the_migration_fills_the_counts_from_the_rows(project, make_member):
    project.rankings_per_task = 3
    project.save()
    ranked, leased, untouched = RankingTaskFactory.create_batch(3, project=project)
    for labeler in (make_member(project), make_member(project)):
        ranking_submit(task=ranked, labeler=labeler, order=[[i] for i in response_ids(ranked)])
    Lease.objects.create(task=leased, labeler=make_member(project), expires_at=timezone.now() + timedelta(minutes=5))
    Lease.objects.create(task=leased, labeler=make_member(project), expires_at=timezone.now() - timedelta(minutes=5))
    RankingTask.objects.update(rankings_count=0, leases_count=0)  # as right after the columns were added
    migration = importlib.import_module("ranking.migrations.0005_rankingtask_counters")
    migration.counters_fill(apps, None)
    assert [_counts(task) for task in (ranked, leased, untouched)] == [(2, 0), (0, 1), (0, 0)]


def test_beat_reclaims_expired_leases_every_minute():
    entry = settings.CELERY_BEAT_SCHEDULE["ranking-leases-purge-expired"]
    assert entry["task"] == "ranking.leases_purge_expired" and entry["schedule"] <= 60


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_the_worker_gives_an_expired_leases_slot_back(celery_worker_process, project, make_member):
    project.rankings_per_task = 1
    project.save()
    task = RankingTaskFactory(project=project)
    _expire(ranking_task_lease_next(project=project, labeler=make_member(project)))
    assert ranking_leases_purge_expired.delay().get(timeout=60) == 1
    assert _counts(task) == (0, 0)
