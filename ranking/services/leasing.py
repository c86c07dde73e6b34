"""Serve ranking tasks to labelers: leases, race-free on PostgreSQL, at the cost of the work in front of them.

Locking rule: whoever adds or removes a lease or a ranking of a task holds that task's row lock
(``select_for_update``) and, holding it, counts the task's rankings and live leases from their rows and
writes them onto the task (``rankings_count``, ``leases_count``). Since every writer holds the lock,
that count is exact, so a task never gets more labelers than it needs, however many labelers ask at
once. ``skip_locked`` lets concurrent labelers pass over a task someone else is being given instead of
queueing behind them; only when every candidate is locked does a labeler wait (for one, holding no
other task lock), so nobody is told "nothing left" while slots remain.

The counters make the pick an index walk (``ranking_task_next_idx``: open, not gold, evaluation first,
nearest to completion first) with ``NOT EXISTS`` probes of this labeler's rankings, skips, leases and
answers, instead of counting every open task of the project. A lease that expires still counts on its
task until it is reclaimed: ``leases_reclaim_expired`` deletes it and recounts the task, on every
``next`` of the project (the lease table is small) and from beat (``ranking.leases_purge_expired``).
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Exists, F, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Membership, Project
from ranking.models import Lease, Ranking, RankingTask, Response, Skip, TaskStatus
from ranking.services.stats import labeler_skip_counted

# Candidates tried per request before giving up: each is locked and recounted, so a few are plenty.
_MAX_ATTEMPTS = 20
# Tasks whose expired leases one reclaim transaction handles (it holds their row locks meanwhile).
_RECLAIM_BATCH = 500


def ranking_task_slots_taken(*, task: RankingTask, now=None, exclude_labeler: AbstractBaseUser | None = None) -> int:
    """Return rankings plus live leases of ``task``. Exact only while the caller holds the task's row lock."""
    now = now or timezone.now()
    leases = Lease.objects.filter(task=task, expires_at__gt=now)
    if exclude_labeler is not None:
        leases = leases.exclude(labeler=exclude_labeler)
    return task.rankings.count() + leases.count()


def _count_of(rows: QuerySet) -> Coalesce:
    per_task = rows.filter(task=OuterRef("pk")).order_by().values("task").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(per_task, output_field=IntegerField()), Value(0))


def ranking_task_counts_refresh(*, task_ids, now=None) -> None:
    """Set these tasks' ``rankings_count`` and ``leases_count`` from their rows; the caller holds their row locks."""
    now = now or timezone.now()
    RankingTask.objects.filter(pk__in=task_ids).update(
        rankings_count=_count_of(Ranking.objects.all()),
        leases_count=_count_of(Lease.objects.filter(expires_at__gt=now)),
    )


@transaction.atomic
def ranking_tasks_counts_recount(*, task_ids) -> None:
    """Lock these tasks (in id order) and recount their rankings and live leases, after rows changed around
    the services (Django admin): a count left too high hides a task from `next` for good."""
    tasks = RankingTask.objects.select_for_update().filter(pk__in=task_ids).order_by("pk")
    ranking_task_counts_refresh(task_ids=list(tasks.values_list("pk", flat=True)))


def _task_counts_settle(*, task: RankingTask, now) -> None:
    """Recount ``task``'s rankings and live leases into its fields (not saved); the caller holds its row lock."""
    counts = (
        RankingTask.objects.filter(pk=task.pk)
        .annotate(
            n_rankings=_count_of(Ranking.objects.all()),
            n_leases=_count_of(Lease.objects.filter(expires_at__gt=now)),
        )
        .values_list("n_rankings", "n_leases")
        .get()
    )
    task.rankings_count, task.leases_count = counts


def _candidates(*, project: Project, labeler: AbstractBaseUser, gold: bool) -> QuerySet[RankingTask]:
    """Tasks this labeler may be given: evaluation tasks, then the nearest to completion (finished sooner).

    Ordered exactly as ``ranking_task_next_idx`` (``ranking_task_gold_next_idx`` for gold) is, so the
    database walks the index and stops at the first row that passes the per-labeler probes.
    """
    mine = {"task": OuterRef("pk")}
    tasks = RankingTask.objects.filter(project=project, status=TaskStatus.OPEN, is_gold=gold).filter(
        ~Exists(Ranking.objects.filter(labeler=labeler, **mine)),
        ~Exists(Skip.objects.filter(labeler=labeler, **mine)),
        ~Exists(Lease.objects.filter(labeler=labeler, **mine)),
        ~Exists(Response.objects.filter(created_by=labeler, **mine)),
    )
    if gold:
        return tasks.order_by("rankings_count", "pk")
    # evaluation tasks first: there are few, and a new policy may wait for their verdict to be promoted
    # ("evaluation" < "ranking", so purpose ASC puts them first, as the index does)
    return tasks.filter(rankings_count__lt=project.rankings_per_task - F("leases_count")).order_by(
        "purpose", "-rankings_count", "pk"
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
    # give expired leases' slots back first, in their own transaction (no task lock is held below
    # while waiting for another)
    leases_reclaim_expired(project=project)
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
        candidates = _candidates(project=project, labeler=labeler, gold=gold).exclude(pk__in=tried)
        try:
            # one savepoint per candidate: a full one is released at once, so we never hold two task
            # locks while waiting for a third (no deadlock between labelers)
            with transaction.atomic():
                task = candidates.select_for_update(skip_locked=True, of=("self",)).first()
                if task is None:
                    # every candidate left is being given to someone else this instant: wait for the
                    # first rather than answer "nothing left" while slots may remain. Wait on that row
                    # alone: a locking walk that waits keeps the lock of each row it then finds changed
                    # and passes over (PostgreSQL's recheck), and two such walks deadlock
                    waiting_for = candidates.values_list("pk", flat=True).first()
                    if waiting_for is None:
                        return None
                    task = RankingTask.objects.select_for_update().filter(pk=waiting_for).first()
                    if task is None or not candidates.filter(pk=waiting_for).exists():
                        tried.append(waiting_for)  # gone, complete or no longer for me meanwhile
                        raise _TaskFull
                # the candidate query read an older snapshot; recount now that the row lock is ours
                _task_counts_settle(task=task, now=now)
                if gold or task.rankings_count + task.leases_count < project.rankings_per_task:
                    lease = Lease.objects.create(task=task, labeler=labeler, expires_at=expires_at)
                    task.leases_count += 1
                    task.save(update_fields=["rankings_count", "leases_count"])
                    return lease
                tried.append(task.pk)
                raise _TaskFull
        except _TaskFull:
            continue
    return None


@transaction.atomic
def lease_release(*, task: RankingTask, labeler: AbstractBaseUser) -> None:
    """Give the task back to the pool (the labeler walks away, skips or has ranked it)."""
    locked = RankingTask.objects.select_for_update().get(pk=task.pk)
    if Lease.objects.filter(task=locked, labeler=labeler).delete()[0]:
        ranking_task_counts_refresh(task_ids=[locked.pk])


def leases_reclaim_expired(*, project: Project | None = None, older_than: timedelta = timedelta(0)) -> int:
    """Delete expired leases and give their slots back (recount their tasks); return how many were deleted.

    Tasks locked by someone else right now are left for the next call: whoever holds the lock recounts
    the task anyway. With ``project``, only that project's leases (what ``next`` calls on every request).
    """
    deleted = 0
    while True:
        with transaction.atomic():
            cutoff = timezone.now() - older_than
            expired = Lease.objects.filter(expires_at__lte=cutoff)
            if project is not None:
                expired = expired.filter(task__project=project)
            task_ids = list(
                RankingTask.objects.filter(pk__in=expired.values("task_id"))
                .order_by("pk")
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:_RECLAIM_BATCH]
            )
            if not task_ids:
                return deleted
            deleted += Lease.objects.filter(task_id__in=task_ids, expires_at__lte=cutoff).delete()[0]
            ranking_task_counts_refresh(task_ids=task_ids)
        if len(task_ids) < _RECLAIM_BATCH:
            return deleted


def leases_purge_expired(*, older_than: timedelta = timedelta(0)) -> int:
    """Delete every expired lease and give its slot back; return how many (beat runs it every minute)."""
    return leases_reclaim_expired(older_than=older_than)


@transaction.atomic
def ranking_task_skip(*, task: RankingTask, labeler: AbstractBaseUser, reason: str = "") -> Skip:
    """Pass on a task: it is released and never served to this labeler again."""
    skip, created = Skip.objects.get_or_create(task=task, labeler=labeler, defaults={"reason": reason[:500]})
    if created:
        labeler_skip_counted(project_id=task.project_id, labeler=labeler)
    if not created and reason and skip.reason != reason[:500]:
        skip.reason = reason[:500]
        skip.save(update_fields=["reason"])
    lease_release(task=task, labeler=labeler)
    return skip
