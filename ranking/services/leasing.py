"""Serve ranking tasks to labelers: leases, race-free on PostgreSQL.

Locking rule: whoever adds a lease or a ranking to a task holds that task's row lock
(``select_for_update``) and counts the task's rankings and live leases after taking it. Since every
writer holds the lock, that count is exact, so a task never gets more labelers than it needs, however
many labelers ask at once. ``skip_locked`` lets concurrent labelers pass over a task someone else is
being given instead of queueing behind them; only when every candidate is locked does a labeler wait
(for one, holding no other task lock), so nobody is told "nothing left" while slots remain.
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Case, Count, F, OuterRef, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Membership, Project
from ranking.models import Lease, Ranking, RankingTask, Response, Skip, TaskPurpose, TaskStatus

# Candidates tried per request before giving up: each is locked and recounted, so a few are plenty.
_MAX_ATTEMPTS = 20


def ranking_task_slots_taken(*, task: RankingTask, now=None, exclude_labeler: AbstractBaseUser | None = None) -> int:
    """Return rankings plus live leases of ``task``. Exact only while the caller holds the task's row lock."""
    now = now or timezone.now()
    leases = Lease.objects.filter(task=task, expires_at__gt=now)
    if exclude_labeler is not None:
        leases = leases.exclude(labeler=exclude_labeler)
    return task.rankings.count() + leases.count()


def _candidates(*, project: Project, labeler: AbstractBaseUser, gold: bool, now) -> QuerySet[RankingTask]:
    """Tasks this labeler may be given: evaluation tasks, then the nearest to completion (finished sooner)."""
    rankings = Ranking.objects.filter(task=OuterRef("pk")).values("task").annotate(n=Count("pk")).values("n")
    leases = (
        Lease.objects.filter(task=OuterRef("pk"), expires_at__gt=now).values("task").annotate(n=Count("pk")).values("n")
    )
    tasks = (
        RankingTask.objects.filter(project=project, status=TaskStatus.OPEN, is_gold=gold)
        .exclude(pk__in=Ranking.objects.filter(labeler=labeler).values("task"))
        .exclude(pk__in=Skip.objects.filter(labeler=labeler).values("task"))
        .exclude(pk__in=Lease.objects.filter(labeler=labeler).values("task"))
        .exclude(pk__in=Response.objects.filter(created_by=labeler).values("task"))
        .annotate(
            taken_rankings=Coalesce(Subquery(rankings), Value(0)),
            taken_leases=Coalesce(Subquery(leases), Value(0)),
        )
    )
    if gold:
        return tasks.order_by("taken_rankings", "pk")
    # evaluation tasks first: there are few, and a new policy may wait for their verdict to be promoted
    evaluation_first = Case(When(purpose=TaskPurpose.EVALUATION, then=Value(0)), default=Value(1))
    return tasks.filter(taken_rankings__lt=project.rankings_per_task - F("taken_leases")).order_by(
        evaluation_first, "-taken_rankings", "pk"
    )


def gold_is_due(*, project: Project, labeler: AbstractBaseUser) -> bool:
    """Return whether the labeler's next task should be gold: every 1/gold_rate-th task, evenly spread.

    With gold_rate r and n tasks already ranked, the next is gold when floor((n + 1) r) > floor(n r):
    deterministic (no luck streaks) and exactly r of the tasks in the long run.
    """
    rate = project.gold_rate
    if rate <= 0:
        return False
    ranked = Ranking.objects.filter(task__project=project, labeler=labeler).count()
    return math.floor((ranked + 1) * rate + 1e-9) > math.floor(ranked * rate + 1e-9)


def lease_active_get(*, project: Project, labeler: AbstractBaseUser) -> Lease | None:
    """Return the labeler's live lease on a still-servable task of ``project``, if any (a reload shows the same task)."""
    return (
        Lease.objects.filter(
            labeler=labeler,
            task__project=project,
            task__status=TaskStatus.OPEN,
            expires_at__gt=timezone.now(),
        )
        .exclude(task__rankings__labeler=labeler)
        .select_related("task")
        .order_by("created_at")
        .first()
    )


def ranking_task_lease_next(*, project: Project, labeler: AbstractBaseUser) -> Lease | None:
    """Lease the labeler's next task in ``project`` and return the lease, or None when nothing is left for them.

    A live lease the labeler already holds is returned again (with a fresh expiry). Otherwise a gold
    task when one is due (``gold_is_due``), else an open evaluation task, else the open task nearest
    completion, that still needs a ranking and that this labeler did not rank, skip or write an answer of.
    """
    if project.is_archived:
        return None
    now = timezone.now()
    expires_at = now + timedelta(minutes=project.lease_minutes)
    with transaction.atomic():
        # one lease decision per labeler and project at a time: several tabs opening the rank page at
        # once wait here, then find the lease the first one took, instead of each taking a task
        # (no ordering, so no join: FOR UPDATE would lock the joined project row, which submits lock too)
        mine = Membership.objects.filter(project=project, user=labeler).order_by()
        list(mine.select_for_update(of=("self",)).values_list("pk"))
        current = lease_active_get(project=project, labeler=labeler)
        if current is not None:
            current.expires_at = expires_at
            current.save(update_fields=["expires_at"])
            return current
        Lease.objects.filter(labeler=labeler, expires_at__lte=now).delete()
        kinds = [True, False] if gold_is_due(project=project, labeler=labeler) else [False, True]
        for gold in kinds:
            lease = _lease_first_free(project=project, labeler=labeler, gold=gold, now=now, expires_at=expires_at)
            if lease is not None:
                return lease
    return None


class _TaskFull(Exception):
    """The candidate filled up meanwhile: roll its savepoint back, which releases its row lock."""


def _lease_first_free(*, project, labeler, gold: bool, now, expires_at) -> Lease | None:
    tried: list[int] = []
    for _ in range(_MAX_ATTEMPTS):
        candidates = _candidates(project=project, labeler=labeler, gold=gold, now=now).exclude(pk__in=tried)
        try:
            # one savepoint per candidate: a full one is released at once, so we never hold two task
            # locks while waiting for a third (no deadlock between labelers)
            with transaction.atomic():
                task = candidates.select_for_update(skip_locked=True, of=("self",)).first()
                if task is None:
                    # every candidate left is being given to someone else this instant: wait for one
                    # rather than answer "nothing left" while slots may remain
                    task = candidates.select_for_update(of=("self",)).first()
                if task is None:
                    return None
                # the candidate query read an older snapshot; recount now that the row lock is ours
                if gold or ranking_task_slots_taken(task=task, now=now) < project.rankings_per_task:
                    return Lease.objects.create(task=task, labeler=labeler, expires_at=expires_at)
                tried.append(task.pk)
                raise _TaskFull
        except _TaskFull:
            continue
    return None


@transaction.atomic
def lease_release(*, task: RankingTask, labeler: AbstractBaseUser) -> None:
    """Give the task back to the pool (the labeler walks away, skips or has ranked it)."""
    Lease.objects.filter(task=task, labeler=labeler).delete()


def leases_purge_expired(*, older_than: timedelta = timedelta(0)) -> int:
    """Delete leases that expired more than ``older_than`` ago; return how many. Expired leases count for nothing anyway."""
    deleted, _ = Lease.objects.filter(expires_at__lte=timezone.now() - older_than).delete()
    return deleted


@transaction.atomic
def ranking_task_skip(*, task: RankingTask, labeler: AbstractBaseUser, reason: str = "") -> Skip:
    """Pass on a task: it is released and never served to this labeler again."""
    skip, created = Skip.objects.get_or_create(task=task, labeler=labeler, defaults={"reason": reason[:500]})
    if not created and reason and skip.reason != reason[:500]:
        skip.reason = reason[:500]
        skip.save(update_fields=["reason"])
    lease_release(task=task, labeler=labeler)
    return skip
