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
task's row until it is reclaimed: by beat every minute (``ranking.leases_purge_expired``), and by
`next` itself for the task it takes (the walk also accepts a task holding an expired lease, and the
lease write deletes it and recounts), so a slot comes back at once without a per-request sweep.
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Project
from config.sql import for_update_clause
from ranking.models import Lease, Ranking, RankingTask, Skip, TaskStatus
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


class _TaskFull(Exception):
    """The candidate locked is full after all (its counts were stale) or no longer a candidate: try again without it."""

    def __init__(self, task_id: int):
        super().__init__(task_id)
        self.task_id = task_id


def ranking_task_lease_next(*, project: Project, labeler: AbstractBaseUser) -> Lease | None:
    """Lease the labeler's next task in ``project`` and return the lease, or None when nothing is left for them.

    A live lease the labeler already holds is returned again (with a fresh expiry). Otherwise a gold
    task when one is due (``gold_is_due``), else an open evaluation task, else the open task nearest
    completion, that still needs a ranking and that this labeler did not rank, skip or write an answer of.

    One transaction of four statements when the first candidate has room (the usual case): lock my
    membership, look for my live lease, lock the pick, write the lease and the recount. A candidate
    found full under its lock (counts on the row were stale) rolls the transaction back, which
    releases its lock, and the next attempt passes over it: we never hold one task's lock while
    waiting for another's (no deadlock between labelers).
    """
    if project.is_archived:
        return None
    tried: list[int] = []
    for _ in range(_MAX_ATTEMPTS):
        try:
            return _lease_next_attempt(project=project, labeler=labeler, tried=tried)
        except _TaskFull as full:
            tried.append(full.task_id)
    return None


@transaction.atomic
def _lease_next_attempt(*, project: Project, labeler: AbstractBaseUser, tried: list[int]) -> Lease | None:
    # one lease decision per labeler and project at a time: several tabs opening the rank page at
    # once wait here, then find the lease the first one took, instead of each taking a task
    # (the membership row alone: locking the project row too would queue behind submits, which lock it)
    with connection.cursor() as cursor:
        cursor.execute(_MEMBERSHIP_LOCK_SQL + for_update_clause(), {"project": project.pk, "labeler": labeler.pk})
    now = timezone.now()
    expires_at = now + timedelta(minutes=project.lease_minutes)
    current = _lease_held_renew(project=project, labeler=labeler, now=now, expires_at=expires_at)
    if current is not None:
        return current
    kinds = [True, False] if gold_is_due(project=project, labeler=labeler) else [False, True]
    for gold in kinds:
        task = _candidate_lock(project=project, labeler=labeler, gold=gold, now=now, tried=tried)
        if task is not None:
            return _lease_write(
                project=project, task=task, labeler=labeler, gold=gold, now=now, expires_at=expires_at
            )
    return None


# `next` runs these statements on every call, so they are written out once as SQL: the ORM spent
# more CPU building the pick (four NOT EXISTS probes) than PostgreSQL spends running it. They run on
# SQLite too (a laptop, the tiny benches): its row-locking clauses are none (config.sql).

_MEMBERSHIP_LOCK_SQL = "SELECT id FROM annotation_membership WHERE project_id = %(project)s AND user_id = %(labeler)s"

# My live lease on a still-servable task of the project (a reload shows the same task), its expiry
# pushed back, in one statement. Renewing changes whether the lease counts, so it holds the task's row
# lock like every other lease writer: otherwise a lease renewed just as it expires could be counted
# expired by another labeler's `next` taking the task at that instant, and both would keep a slot.
# Whoever locks first wins: after another `next` reclaimed it, the UPDATE finds the lease gone.
_HELD_RENEW_SQL = """
UPDATE ranking_lease SET expires_at = %(expires_at)s
WHERE id = (
    SELECT l.id FROM ranking_lease l JOIN ranking_rankingtask t ON t.id = l.task_id
    WHERE l.labeler_id = %(labeler)s AND t.project_id = %(project)s AND t.status = %(open)s
      AND l.expires_at > %(now)s
      AND NOT EXISTS (SELECT 1 FROM ranking_ranking r WHERE r.task_id = l.task_id AND r.labeler_id = %(labeler)s)
    ORDER BY l.created_at LIMIT 1{lock}
) AND expires_at > %(now)s
RETURNING id
"""

# Tasks this labeler may be given: open, of the kind asked (gold or not), not ranked, skipped,
# leased (live) or answered by them. Plain tasks must also have room, or hold an expired lease whose
# slot taking the task gives back (``_lease_write``), so `next` never waits for beat to free a slot;
# an expired lease of mine doesn't keep the task from me either (it is taken over).
_CANDIDATE_FILTERS = """
    t.project_id = %(project)s AND t.status = %(open)s AND t.is_gold = %(gold)s
    AND (%(gold)s OR t.rankings_count < %(wanted)s - t.leases_count
         OR EXISTS (SELECT 1 FROM ranking_lease x WHERE x.task_id = t.id AND x.expires_at <= %(now)s))
    AND NOT EXISTS (SELECT 1 FROM ranking_ranking r WHERE r.task_id = t.id AND r.labeler_id = %(labeler)s)
    AND NOT EXISTS (SELECT 1 FROM ranking_skip s WHERE s.task_id = t.id AND s.labeler_id = %(labeler)s)
    AND NOT EXISTS (SELECT 1 FROM ranking_lease l
                    WHERE l.task_id = t.id AND l.labeler_id = %(labeler)s AND l.expires_at > %(now)s)
    AND NOT EXISTS (SELECT 1 FROM ranking_response a WHERE a.task_id = t.id AND a.created_by_id = %(labeler)s)
"""
# Ordered exactly as ranking_task_next_idx (plain: evaluation tasks first, "evaluation" < "ranking",
# then the nearest to completion, finished sooner) and ranking_task_gold_next_idx (gold) are, so the
# database walks the index and stops at the first row that passes the probes.
_CANDIDATE_ORDER = {False: "t.purpose, t.rankings_count DESC, t.id", True: "t.rankings_count, t.id"}


def _candidate_sql(*, gold: bool, tried: list[int], lock: str) -> str:
    """The candidate query: ``lock`` "pick" (the first unlocked one, locked), "first" (its id, no lock) or
    "wait" (the row ``%(waiting_for)s`` if still a candidate, locked, waiting for whoever holds it)."""
    sql = f"SELECT {'t.id' if lock == 'first' else 't.*'} FROM ranking_rankingtask t WHERE {_CANDIDATE_FILTERS}"
    if tried:  # candidates found full under their lock this call
        sql += f" AND t.id NOT IN ({', '.join(str(int(task_id)) for task_id in tried)})"
    if lock == "wait":
        return sql + " AND t.id = %(waiting_for)s" + for_update_clause(of="t")
    sql += f" ORDER BY {_CANDIDATE_ORDER[gold]} LIMIT 1"
    # pick: pass over a task someone else is being given this instant rather than queue behind them
    return sql + for_update_clause(of="t", skip_locked=True) if lock == "pick" else sql


def _lease_held_renew(*, project: Project, labeler: AbstractBaseUser, now, expires_at) -> Lease | None:
    """Return my live lease on a servable task of ``project`` with its expiry pushed back, or None."""
    params = {"labeler": labeler.pk, "project": project.pk, "open": TaskStatus.OPEN, "now": now, "expires_at": expires_at}
    with connection.cursor() as cursor:
        cursor.execute(_HELD_RENEW_SQL.format(lock=for_update_clause(of="t")), params)
        row = cursor.fetchone()
    return None if row is None else Lease.objects.select_related("task").get(pk=row[0])


def _candidate_lock(*, project: Project, labeler: AbstractBaseUser, gold: bool, now, tried: list[int]):
    """Lock and return the first candidate of this kind, or None when there is none."""
    params = {
        "project": project.pk,
        "labeler": labeler.pk,
        "open": TaskStatus.OPEN,
        "gold": gold,
        "wanted": project.rankings_per_task,
        "now": now,
    }
    task = next(iter(RankingTask.objects.raw(_candidate_sql(gold=gold, tried=tried, lock="pick"), params)), None)
    if task is not None:
        return task
    # every candidate left is being given to someone else this instant: wait for the first rather
    # than answer "nothing left" while slots may remain. Wait on that row alone: a locking walk that
    # waits keeps the lock of each row it then finds changed and passes over (PostgreSQL's recheck),
    # and two such walks deadlock
    with connection.cursor() as cursor:
        cursor.execute(_candidate_sql(gold=gold, tried=tried, lock="first"), params)
        row = cursor.fetchone()
    if row is None:
        return None
    waiting = _candidate_sql(gold=gold, tried=tried, lock="wait")
    task = next(iter(RankingTask.objects.raw(waiting, params | {"waiting_for": row[0]})), None)
    if task is None:
        raise _TaskFull(row[0])  # gone, complete or no longer for me meanwhile
    return task


# Under the task's row lock (taken by the statement before, so this statement's snapshot sees every
# ranking and lease committed by whoever held it earlier): count the task's rankings and live leases
# from their rows, give expired leases' slots back (an expired lease of mine is taken over by ON
# CONFLICT rather than deleted: the delete and the insert of one statement may run in either order),
# lease it when it has room (gold: always), and write the counts on the row.
_LEASE_WRITE_SQL = """
WITH counts AS (
    SELECT (SELECT count(*) FROM ranking_ranking WHERE task_id = %(task)s) AS rankings,
           (SELECT count(*) FROM ranking_lease WHERE task_id = %(task)s AND expires_at > %(now)s) AS leases
), reclaimed AS (
    DELETE FROM ranking_lease WHERE task_id = %(task)s AND expires_at <= %(now)s AND labeler_id <> %(labeler)s
), leased AS (
    INSERT INTO ranking_lease (task_id, labeler_id, expires_at, created_at)
    SELECT %(task)s, %(labeler)s, %(expires_at)s, %(now)s FROM counts
    WHERE %(gold)s OR counts.rankings + counts.leases < %(wanted)s
    ON CONFLICT (task_id, labeler_id) DO UPDATE SET expires_at = excluded.expires_at, created_at = excluded.created_at
    RETURNING id
)
UPDATE ranking_rankingtask AS task
SET rankings_count = counts.rankings, leases_count = counts.leases + (SELECT count(*) FROM leased)
FROM counts WHERE task.id = %(task)s
RETURNING task.rankings_count, task.leases_count, (SELECT id FROM leased)
"""


def _lease_write(
    *, project: Project, task: RankingTask, labeler: AbstractBaseUser, gold: bool, now, expires_at
) -> Lease:
    """Lease ``task`` to ``labeler`` if it has room (in one statement on PostgreSQL); the caller holds its row lock."""
    if connection.vendor != "postgresql":
        return _lease_write_in_steps(project=project, task=task, labeler=labeler, gold=gold, now=now, expires_at=expires_at)
    with connection.cursor() as cursor:
        cursor.execute(
            _LEASE_WRITE_SQL,
            {
                "task": task.pk,
                "labeler": labeler.pk,
                "now": now,
                "expires_at": expires_at,
                "gold": gold,
                "wanted": project.rankings_per_task,
            },
        )
        task.rankings_count, task.leases_count, lease_id = cursor.fetchone()
    task.project = project
    if lease_id is None:
        raise _TaskFull(task.pk)
    return Lease(pk=lease_id, task=task, labeler=labeler, expires_at=expires_at, created_at=now)


def _lease_write_in_steps(
    *, project: Project, task: RankingTask, labeler: AbstractBaseUser, gold: bool, now, expires_at
) -> Lease:
    """What ``_LEASE_WRITE_SQL`` does, a statement at a time (SQLite has no data-modifying WITH)."""
    Lease.objects.filter(task=task, expires_at__lte=now).exclude(labeler=labeler).delete()
    task.rankings_count = Ranking.objects.filter(task=task).count()
    task.leases_count = Lease.objects.filter(task=task, expires_at__gt=now).count()
    lease = None
    if gold or task.rankings_count + task.leases_count < project.rankings_per_task:
        lease, _ = Lease.objects.update_or_create(
            task=task, labeler=labeler, defaults={"expires_at": expires_at, "created_at": now}
        )
        task.leases_count += 1
    RankingTask.objects.filter(pk=task.pk).update(rankings_count=task.rankings_count, leases_count=task.leases_count)
    task.project = project
    if lease is None:
        raise _TaskFull(task.pk)
    return lease


@transaction.atomic
def lease_release(*, task: RankingTask, labeler: AbstractBaseUser) -> None:
    """Give the task back to the pool (the labeler walks away, skips or has ranked it)."""
    locked = RankingTask.objects.select_for_update().get(pk=task.pk)
    if Lease.objects.filter(task=locked, labeler=labeler).delete()[0]:
        ranking_task_counts_refresh(task_ids=[locked.pk])


def leases_reclaim_expired(*, project: Project | None = None, older_than: timedelta = timedelta(0)) -> int:
    """Delete expired leases and give their slots back (recount their tasks); return how many were deleted.

    Tasks locked by someone else right now are left for the next call: whoever holds the lock recounts
    the task anyway. With ``project``, only that project's leases.
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
