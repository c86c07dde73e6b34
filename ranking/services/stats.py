"""Running figures of labelers and projects, kept where rankings, skips and tasks are written.

The quality page and "My stats" read these rows instead of recomputing a whole project per view:

- ``ranking_task_stats_sync(task=…)`` runs in the transaction that changed a task's rankings,
  consensus, gold order or status, under the task's row lock (submit, consensus refresh, gold,
  disable). Each ranking's ``CountedRanking`` row says what it added to the figures; the sync
  computes what the task's rankings add now, applies the difference to the labelers' rows and the
  project's row, and records the new contributions. Its cost is the task's handful of rankings.
- ``labeler_skip_counted`` adds a skip; ``imported_rankings_counted`` the preferences an import wrote.
- ``ranking_project_stats_rebuild`` recounts a project from its rows (rows written around the
  services: bulk imports, deletions in the admin, a bench); it runs on the worker, a task at a time.

Lock order: a task's row first (the caller's), then ``LabelerStats`` rows by labeler id, then the
project's row, so two submits never wait on each other in a circle.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from annotation.models import Project
from ranking.models import (
    CountedRanking,
    LabelerStats,
    ProjectRankingStats,
    Ranking,
    RankingTask,
    Response,
    Skip,
    TaskPurpose,
    TaskStatus,
)
from ranking.services.agreement import kendall_tau_b, pairwise_accuracy
from ranking.services.consensus import ranked_pairs
from ranking.services.orderings import ordering_fractional_ranks

TIME_STEP_MS = 100  # the median time is kept to a tenth of a second


@dataclass(frozen=True)
class Contribution:
    """What one ranking adds to its labeler's figures beyond counting as ranked (see CountedRanking)."""

    agreement: float | None = None
    gold_hits: int | None = None
    gold_pairs: int | None = None


@dataclass
class _LabelerDelta:
    ranked: int = 0
    all_bad: int = 0
    agreement_sum: float = 0.0
    agreement_sq_sum: float = 0.0
    agreement_tasks: int = 0
    gold_hits: int = 0
    gold_pairs: int = 0
    gold_tasks: int = 0
    times: Counter = field(default_factory=Counter)
    flags: Counter = field(default_factory=Counter)
    days: Counter = field(default_factory=Counter)  # local date of the ranking -> +/- 1

    def add(self, ranking: Ranking, contribution: Contribution, sign: int) -> None:
        self.ranked += sign
        self.all_bad += sign * bool(ranking.all_bad)
        self.times[str(round(ranking.time_spent_ms / TIME_STEP_MS))] += sign
        for values in (ranking.flags or {}).values():
            for flag in values:
                self.flags[flag] += sign
        self.days[timezone.localdate(ranking.created_at)] += sign
        if contribution.agreement is not None:
            self.agreement_sum += sign * contribution.agreement
            self.agreement_sq_sum += sign * contribution.agreement**2
            self.agreement_tasks += sign
        if contribution.gold_pairs is not None:
            self.gold_hits += sign * (contribution.gold_hits or 0)
            self.gold_pairs += sign * contribution.gold_pairs
            self.gold_tasks += sign


def ranking_contributions(
    *, task: RankingTask, rankings: Sequence[Ranking], items: Sequence[int]
) -> dict[int, Contribution]:
    """Return what each ranking of ``task`` adds now, by ranking id; nothing for a disabled task.

    A gold task measures its labelers against the gold order; a task with a consensus (complete)
    measures each with Kendall's tau-b against the consensus of the *other* rankings (leave-one-out,
    so a ranking doesn't vote for what it is compared with). Evaluation tasks count as work only.
    Imported rankings (no labeler) count toward the project's figures, not a labeler's.
    """
    if task.status == TaskStatus.DISABLED:
        return {}
    orders = [ranking.order for ranking in rankings]
    found = {}
    for index, ranking in enumerate(rankings):
        contribution = Contribution()
        if ranking.labeler_id is not None:
            if task.is_gold and task.gold_order:
                hits, pairs = pairwise_accuracy(ranking.order, reference=task.gold_order)
                contribution = Contribution(gold_hits=hits, gold_pairs=pairs)
            elif task.consensus_order is not None and task.purpose != TaskPurpose.EVALUATION:
                others = orders[:index] + orders[index + 1:]
                if others:
                    contribution = Contribution(agreement=kendall_tau_b(ranking.order, ranked_pairs(others, items=items)))
        found[ranking.pk] = contribution
    return found


def task_coincidences(*, task: RankingTask, orders: Sequence) -> Counter:
    """Return the task's share of the project's Krippendorff coincidence matrix: every answer is a unit,
    its fractional rank in each ranking a value. Nothing for an evaluation task or a single ranking."""
    coincidences: Counter = Counter()
    if task.purpose == TaskPurpose.EVALUATION or len(orders) < 2:
        return coincidences
    ranks = [ordering_fractional_ranks(order) for order in orders]
    for item in ranks[0]:
        values = [rank[item] for rank in ranks if item in rank]
        m = len(values)
        for i in range(m):
            for j in range(m):
                if i != j:
                    coincidences[f"{values[i]}|{values[j]}"] += 1 / (m - 1)
    return coincidences


def coincidences_decode(stored: dict) -> dict[tuple[float, float], float]:
    """Turn the stored ``{"c|k": weight}`` back into ``{(c, k): weight}``, dropping rounding dust."""
    decoded = {}
    for key, weight in stored.items():
        if weight > 1e-9:
            c, k = key.split("|")
            decoded[(float(c), float(k))] = weight
    return decoded


def ranking_task_stats_sync(*, task: RankingTask) -> None:
    """Bring the figures up to date with ``task``'s rankings, consensus, gold order and status.

    Call it in the transaction that changed the task, holding the task's row lock, after the change.
    """
    rankings = list(Ranking.objects.filter(task=task).select_related("counted").order_by("pk"))
    before: dict[int, Contribution] = {}
    for ranking in rankings:
        counted = getattr(ranking, "counted", None)
        if counted is not None:
            before[ranking.pk] = Contribution(counted.agreement, counted.gold_hits, counted.gold_pairs)
    needs_items = task.consensus_order is not None and not task.is_gold
    items = list(Response.objects.filter(task=task).values_list("pk", flat=True)) if needs_items else []
    after = ranking_contributions(task=task, rankings=rankings, items=items)
    if before == after:
        return
    deltas: dict[int, _LabelerDelta] = defaultdict(_LabelerDelta)
    for ranking in rankings:
        old, new = before.get(ranking.pk), after.get(ranking.pk)
        if old == new or ranking.labeler_id is None:
            continue
        if old is not None:
            deltas[ranking.labeler_id].add(ranking, old, -1)
        if new is not None:
            deltas[ranking.labeler_id].add(ranking, new, +1)
    _labelers_apply(project_id=task.project_id, deltas=deltas)
    coincidences = task_coincidences(task=task, orders=[r.order for r in rankings if r.pk in after])
    coincidences.subtract(task_coincidences(task=task, orders=[r.order for r in rankings if r.pk in before]))
    labeled = {ranking.pk for ranking in rankings if ranking.labeler_id is not None}
    _project_apply(project_id=task.project_id, rankings=len(labeled & set(after)) - len(labeled & set(before)),
                   coincidences=coincidences)
    CountedRanking.objects.filter(ranking_id__in=[pk for pk in before if pk not in after]).delete()
    changed = [CountedRanking(ranking_id=pk, agreement=c.agreement, gold_hits=c.gold_hits, gold_pairs=c.gold_pairs)
               for pk, c in after.items() if before.get(pk) != c]
    CountedRanking.objects.bulk_create(
        changed, update_conflicts=True, unique_fields=["ranking"], update_fields=["agreement", "gold_hits", "gold_pairs"]
    )


def _labelers_apply(*, project_id: int, deltas: dict[int, _LabelerDelta]) -> None:
    pending = set(deltas)
    # twice at most: a recount (ranking_project_stats_rebuild) may delete a row between our insert and our lock
    for _attempt in range(2):
        if not pending:
            return
        LabelerStats.objects.bulk_create(
            [LabelerStats(project_id=project_id, labeler_id=pk) for pk in sorted(pending)], ignore_conflicts=True
        )
        rows = LabelerStats.objects.select_for_update().filter(project_id=project_id, labeler_id__in=pending)
        for row in rows.order_by("labeler_id"):
            _labeler_row_add(row, deltas[row.labeler_id])
            pending.discard(row.labeler_id)
    if pending:
        raise RuntimeError(f"Labeler figures of {sorted(pending)} in project {project_id} vanished twice; retry.")


def _labeler_row_add(row: LabelerStats, delta: _LabelerDelta) -> None:
    for name in ("ranked", "all_bad", "agreement_tasks", "gold_hits", "gold_pairs", "gold_tasks"):
        setattr(row, name, max(getattr(row, name) + getattr(delta, name), 0))
    row.agreement_sum = row.agreement_sum + delta.agreement_sum if row.agreement_tasks else 0.0
    row.agreement_sq_sum = max(row.agreement_sq_sum + delta.agreement_sq_sum, 0.0) if row.agreement_tasks else 0.0
    row.times = _counter_add(row.times, delta.times)
    row.flags = _counter_add(row.flags, delta.flags)
    for day, change in sorted(delta.days.items()):
        if row.today is None or day > row.today:
            row.today, row.ranked_today = day, 0
        if day == row.today:
            row.ranked_today = max(row.ranked_today + change, 0)
    row.save()


def _project_apply(*, project_id: int, rankings: int, coincidences: Counter) -> None:
    if not rankings and not any(abs(v) > 1e-12 for v in coincidences.values()):
        return
    row = None
    for _attempt in range(2):  # as in _labelers_apply: a recount may delete the row meanwhile
        ProjectRankingStats.objects.bulk_create([ProjectRankingStats(project_id=project_id)], ignore_conflicts=True)
        row = ProjectRankingStats.objects.select_for_update().filter(project_id=project_id).first()
        if row is not None:
            break
    if row is None:
        raise RuntimeError(f"The ranking figures of project {project_id} vanished twice; retry.")
    row.rankings = max(row.rankings + rankings, 0)
    merged = Counter({key: float(weight) for key, weight in row.coincidences.items()})
    merged.update(coincidences)
    row.coincidences = {key: weight for key, weight in merged.items() if abs(weight) > 1e-9}
    row.save(update_fields=["rankings", "coincidences"])


def _counter_add(stored: dict, delta: Counter) -> dict:
    merged = Counter({key: int(value) for key, value in stored.items()})
    merged.update(delta)
    return {key: value for key, value in merged.items() if value > 0}


def imported_rankings_counted(*, project_id: int, count: int) -> None:
    """Count the preferences an import wrote (in the import's transaction); they belong to no labeler."""
    if count:
        ProjectRankingStats.objects.bulk_create([ProjectRankingStats(project_id=project_id)], ignore_conflicts=True)
        ProjectRankingStats.objects.filter(project_id=project_id).update(imported_rankings=F("imported_rankings") + count)


def labeler_skip_counted(*, project_id: int, labeler: AbstractBaseUser) -> None:
    """Count a new skip in the labeler's figures (in the skip's transaction)."""
    LabelerStats.objects.bulk_create([LabelerStats(project_id=project_id, labeler=labeler)], ignore_conflicts=True)
    LabelerStats.objects.filter(project_id=project_id, labeler=labeler).update(skipped=F("skipped") + 1)


def median_from_histogram(times: dict) -> float | None:
    """Return the median time in milliseconds from ``{tenths of a second: rankings}``."""
    steps = sorted((int(key), count) for key, count in times.items() if count > 0)
    total = sum(count for _, count in steps)
    if not total:
        return None
    wanted = sorted({(total - 1) // 2, total // 2})
    found, seen = [], 0
    for step, count in steps:
        while wanted and wanted[0] < seen + count:
            found.append(step)
            wanted.pop(0)
        seen += count
    return sum(found) / len(found) * TIME_STEP_MS


def ranking_project_stats_rebuild(*, project: Project) -> None:
    """Recount every labeler's and the project's figures from the rankings and skips (O(rankings of the project)).

    Run it after rows were written around the services, or rankings deleted. The figures are reset
    in one short transaction that locks their rows in the order submits do (a submit in flight lands
    before the reset, which then wipes it with the rest, or waits for it); then each ranked task is
    recounted in its own transaction under its row lock, as a submit would. A submit meanwhile
    counts its task whole (nothing of it is counted any more) and the recount finds nothing left to add.
    """
    with transaction.atomic():
        labelers = LabelerStats.objects.select_for_update().filter(project=project).order_by("labeler_id")
        list(labelers.values_list("pk", flat=True))
        list(ProjectRankingStats.objects.select_for_update().filter(project=project).values_list("pk", flat=True))
        CountedRanking.objects.filter(ranking__task__project=project).delete()
        LabelerStats.objects.filter(project=project).delete()
        ProjectRankingStats.objects.filter(project=project).delete()
    # tasks with a labeler's ranking, or two rankings or more: a task holding one imported preference
    # adds nothing but that preference, counted below (a million-line import stays a single count)
    rankings = Ranking.objects.filter(task__project=project).order_by()
    task_ids = set(rankings.filter(labeler__isnull=False).values_list("task_id", flat=True))
    task_ids |= set(rankings.values("task_id").annotate(n=Count("pk")).filter(n__gte=2).values_list("task_id", flat=True))
    for task_id in sorted(task_ids):
        with transaction.atomic():
            task = RankingTask.objects.select_for_update().filter(pk=task_id).first()
            if task is not None:
                ranking_task_stats_sync(task=task)
    imported_rankings_counted(project_id=project.pk, count=rankings.filter(is_imported=True).count())
    skips = Counter(Skip.objects.filter(task__project=project).values_list("labeler_id", flat=True))
    with transaction.atomic():
        LabelerStats.objects.bulk_create(
            [LabelerStats(project=project, labeler_id=pk) for pk in sorted(skips)], ignore_conflicts=True
        )
        for labeler_id, count in sorted(skips.items()):
            LabelerStats.objects.filter(project=project, labeler_id=labeler_id).update(skipped=count)
