"""Reads for ranking: tasks as a user may see them, the shown order, labeler stats and project quality."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Avg, Count, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum
from django.http import Http404
from django.utils import timezone

from annotation.models import Project, Role
from annotation.selectors import membership_get, user_can_use_training_api
from config.counting import count_or_estimate
from config.ids import parse_object_id
from ranking.models import (
    Flag,
    LabelerStats,
    Lease,
    ProjectRankingStats,
    Ranking,
    RankingTask,
    Response,
    Skip,
    TaskPurpose,
    TaskStatus,
)
from ranking.services.agreement import krippendorff_alpha_from_coincidences
from ranking.services.stats import coincidences_decode, median_from_histogram

# A labeler is highlighted on the quality page past these limits (with enough tasks to judge).
LOW_GOLD_ACCURACY = 0.7
FAST_MEDIAN_MS = 5_000
MIN_TASKS_TO_JUDGE = 3
# Low agreement is a one-sided test (see agreement_check): the labeler's mean tau-b must be below half
# the other labelers' mean with this confidence, judged on at least this many complete tasks.
# 95 %, one-sided. A careful labeler sits near the team's mean, twice the bar: at 60+ tasks a false flag
# needs an error of several standard errors, so even 200 careful labelers see next to none; the 5 % is
# spent on labelers whose true agreement sits right at the bar.
AGREEMENT_CONFIDENCE_Z = 1.645
MIN_AGREEMENT_TASKS = 10
LOW, OK, NOT_ENOUGH_DATA = "low", "ok", "not enough data"


@dataclass(frozen=True)
class AgreementTotals:
    """Per-task agreements (leave-one-out tau-b) of one labeler or a group: how many, their sum and sum of squares."""

    tasks: int = 0
    total: float = 0.0
    squares: float = 0.0

    def __sub__(self, other: AgreementTotals) -> AgreementTotals:
        return AgreementTotals(self.tasks - other.tasks, self.total - other.total, self.squares - other.squares)

    @property
    def mean(self) -> float | None:
        return self.total / self.tasks if self.tasks else None

    @property
    def variance(self) -> float | None:
        """Sample variance of the per-task values (None under two tasks)."""
        if self.tasks < 2:
            return None
        return max(self.squares - self.total**2 / self.tasks, 0.0) / (self.tasks - 1)


def agreement_check(*, own: AgreementTotals, peers: AgreementTotals) -> str | None:
    """Return LOW, OK or NOT_ENOUGH_DATA for a labeler's agreement; None when they have none yet.

    LOW when the labeler's mean tau-b is, with 95 % confidence (one-sided, over their complete tasks as
    independent units), below half the other labelers' mean: closer to chance (tau-b 0) than to the
    team. The spread is the larger of the labeler's own and the others' (a few tasks that happen to
    agree alike must not make a labeler look sure). NOT_ENOUGH_DATA when fewer than
    MIN_AGREEMENT_TASKS tasks, or when the labeler is not clearly above the bar and their tasks are
    so few that even a labeler at chance could not be told from it.
    A fixed bar (tau-b below 0.2) flagged careful labelers of a team whose members agree on ~73 % of
    pairs, as InstructGPT's did, while letting a noisier or easier project's random labeler through.
    """
    if own.tasks == 0:
        return None
    if own.tasks < MIN_AGREEMENT_TASKS or peers.tasks < MIN_AGREEMENT_TASKS:
        return NOT_ENOUGH_DATA
    if peers.mean <= 0:
        return OK  # the others agree no better than chance: nobody can be below them
    bar = peers.mean / 2
    spread = max(own.variance or 0.0, peers.variance or 0.0)
    margin = AGREEMENT_CONFIDENCE_Z * math.sqrt(spread / own.tasks)
    if own.mean + margin < bar:
        return LOW
    if margin >= bar and own.mean - margin < bar:
        return NOT_ENOUGH_DATA
    return OK


def ranking_task_get_for_user(*, user: AbstractBaseUser, task_id: int | str) -> RankingTask:
    """Return the task if ``user`` belongs to its project; otherwise raise 404 (ids leak nothing)."""
    try:
        task = RankingTask.objects.select_related("project").get(pk=parse_object_id(task_id))
    except (RankingTask.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404("No such ranking task.") from exc
    if membership_get(user=user, project=task.project) is None:
        raise Http404("No such ranking task.")
    return task


def user_sees_task_internals(*, user: AbstractBaseUser, project: Project) -> bool:
    """Reviewers and up, and ML engineers, see consensus, gold and everyone's rankings; labelers don't."""
    membership = membership_get(user=user, project=project)
    return membership is not None and (membership.has_role(Role.REVIEWER) or user_can_use_training_api(user=user))


def responses_in_shown_order(*, task: RankingTask, labeler: AbstractBaseUser) -> list[Response]:
    """Return the task's answers shuffled for this labeler (against position bias), the same on every reload."""
    responses = sorted(task.responses.all(), key=lambda response: response.position)  # prefetched in lists
    random.Random(f"ranking-task-{task.pk}-labeler-{labeler.pk}").shuffle(responses)
    return responses


def ranking_get(*, task: RankingTask, labeler: AbstractBaseUser) -> Ranking | None:
    return Ranking.objects.filter(task=task, labeler=labeler).first()


def lease_get(*, task: RankingTask, labeler: AbstractBaseUser) -> Lease | None:
    return Lease.objects.filter(task=task, labeler=labeler, expires_at__gt=timezone.now()).first()


def ranking_task_list(*, project: Project, status: str | None = None, is_gold: bool | None = None) -> QuerySet:
    """The project's tasks with their answers and rankings (labelers included) prefetched."""
    tasks = RankingTask.objects.filter(project=project)
    if status:
        tasks = tasks.filter(status=status)
    if is_gold is not None:
        tasks = tasks.filter(is_gold=is_gold)
    return tasks.select_related("project").prefetch_related(
        "responses", Prefetch("rankings", queryset=Ranking.objects.select_related("labeler").order_by("pk"))
    ).order_by("pk")


def leases_by_task(*, task_ids: list[int], labeler: AbstractBaseUser) -> dict[int, Lease]:
    """Return the labeler's live leases on these tasks, by task id (one query for a list page)."""
    leases = Lease.objects.filter(task_id__in=task_ids, labeler=labeler, expires_at__gt=timezone.now())
    return {lease.task_id: lease for lease in leases}


def rankings_by_task(*, task_ids: list[int], labeler: AbstractBaseUser) -> dict[int, Ranking]:
    """Return the labeler's rankings of these tasks, by task id (one query for a list page)."""
    rankings = Ranking.objects.filter(task_id__in=task_ids, labeler=labeler).select_related("labeler")
    return {ranking.task_id: ranking for ranking in rankings}


def ranking_task_counts(*, project: Project) -> dict[str, int]:
    """Return how many tasks the project has, by status, and how many are gold.

    Complete, gold and disabled tasks are counted exactly (as many as the work done, through the
    (project, status, is_gold) index); the total is exact up to EXACT_COUNT_LIMIT and PostgreSQL's
    estimate above (``estimated`` is then 1), so a million-task project costs no full count.
    """
    tasks = RankingTask.objects.filter(project=project)
    # every task that is not plain open, through the (project, status, is_gold) index: two index ranges
    not_open = tasks.filter(status__in=[TaskStatus.COMPLETE, TaskStatus.DISABLED]).order_by()
    by_kind = {
        (status, gold): n for status, gold, n in not_open.values_list("status", "is_gold").annotate(n=Count("pk"))
    }
    by_kind[(TaskStatus.OPEN, True)] = tasks.filter(status=TaskStatus.OPEN, is_gold=True).count()
    total, estimated = count_or_estimate(tasks)
    counted = sum(by_kind.values())
    return {
        "total": max(total, counted),
        "open": max(total, counted) - counted,
        "complete": sum(n for (status, _gold), n in by_kind.items() if status == TaskStatus.COMPLETE),
        "gold": sum(n for (_status, gold), n in by_kind.items() if gold),
        "disabled": sum(n for (status, _gold), n in by_kind.items() if status == TaskStatus.DISABLED),
        "estimated": int(estimated),
    }


@dataclass
class LabelerFigures:
    """What the quality page and "My stats" show about one labeler of a project (read from LabelerStats)."""

    labeler_id: int
    username: str = ""
    ranked: int = 0
    ranked_today: int = 0
    skipped: int = 0
    all_bad: int = 0
    agreement_sum: float = field(default=0.0, repr=False)
    agreement_sq_sum: float = field(default=0.0, repr=False)
    agreement_tasks: int = 0
    gold_hits: int = 0
    gold_pairs: int = 0
    gold_tasks: int = 0
    median_time_ms: float | None = None
    flags: Counter = field(default_factory=Counter, repr=False)
    team: AgreementTotals | None = field(default=None, repr=False)  # every labeler of the project, this one too

    @classmethod
    def from_row(cls, row: LabelerStats, *, username: str = "") -> LabelerFigures:
        return cls(
            labeler_id=row.labeler_id,
            username=username,
            ranked=row.ranked,
            ranked_today=row.ranked_today if row.today == timezone.localdate() else 0,
            skipped=row.skipped,
            all_bad=row.all_bad,
            agreement_sum=row.agreement_sum,
            agreement_sq_sum=row.agreement_sq_sum,
            agreement_tasks=row.agreement_tasks,
            gold_hits=row.gold_hits,
            gold_pairs=row.gold_pairs,
            gold_tasks=row.gold_tasks,
            median_time_ms=median_from_histogram(row.times),
            flags=Counter(row.flags),
        )

    @property
    def agreement(self) -> float | None:
        """Mean Kendall tau-b with the (leave-one-out) consensus of complete tasks."""
        # the sum is kept by adding and taking back: round off the float dust that leaves
        return round(self.agreement_sum / self.agreement_tasks, 12) if self.agreement_tasks else None

    @property
    def agreement_totals(self) -> AgreementTotals:
        return AgreementTotals(self.agreement_tasks, self.agreement_sum, self.agreement_sq_sum)

    @property
    def agreement_check(self) -> str | None:
        """LOW, OK or NOT_ENOUGH_DATA against the other labelers (see agreement_check); None without agreement."""
        own = self.agreement_totals
        return agreement_check(own=own, peers=(self.team or own) - own)

    @property
    def gold_accuracy(self) -> float | None:
        """Share of the gold rankings' preferences this labeler ordered the same way."""
        return self.gold_hits / self.gold_pairs if self.gold_pairs else None

    @property
    def all_bad_share(self) -> float | None:
        return self.all_bad / self.ranked if self.ranked else None

    @property
    def warnings(self) -> list[str]:
        """Why a manager should look at this labeler (empty when nothing stands out)."""
        found = []
        if self.agreement_check == LOW:
            found.append("low agreement")
        if self.gold_accuracy is not None and self.gold_tasks >= 1 and self.gold_accuracy < LOW_GOLD_ACCURACY:
            found.append("misses gold")
        if self.median_time_ms is not None and self.ranked >= MIN_TASKS_TO_JUDGE and self.median_time_ms < FAST_MEDIAN_MS:
            found.append("very fast")
        return found


def labeler_stats(*, project: Project, labeler: AbstractBaseUser) -> LabelerFigures:
    """Return one labeler's figures in ``project`` ("My stats"): one row, kept by ranking.services.stats."""
    row = LabelerStats.objects.filter(project=project, labeler=labeler).first()
    if row is None:
        return LabelerFigures(labeler_id=labeler.pk, username=labeler.get_username())
    figures = LabelerFigures.from_row(row, username=labeler.get_username())
    figures.team = team_agreement_totals(project=project)
    return figures


def team_agreement_totals(*, project: Project) -> AgreementTotals:
    """Return the per-task agreement totals of every labeler of the project (one row per labeler summed)."""
    sums = LabelerStats.objects.filter(project=project).aggregate(
        tasks=Sum("agreement_tasks"), total=Sum("agreement_sum"), squares=Sum("agreement_sq_sum")
    )
    return AgreementTotals(sums["tasks"] or 0, sums["total"] or 0.0, sums["squares"] or 0.0)


@dataclass
class ProjectQuality:
    labelers: list[LabelerFigures]
    alpha: float | None
    mean_task_agreement: float | None
    counts: dict[str, int]
    rankings: int
    disagreements: list[RankingTask]  # tasks with two or more rankings, the lowest agreement first
    flags: list[tuple[str, str, int]]  # (flag, label, count), most frequent first


def project_ranking_quality(*, project: Project, disagreements: int = 10) -> ProjectQuality:
    """Return what a manager needs to judge the project's rankings and find careless labelers.

    Reads the running figures (one row per labeler, one for the project) and the most disputed
    tasks through an index: nothing here grows with the project's tasks or rankings.
    """
    rows = LabelerStats.objects.filter(project=project).filter(Q(ranked__gt=0) | Q(skipped__gt=0))
    labelers = [
        LabelerFigures.from_row(row, username=username)
        for row, username in ((row, row.labeler.username) for row in rows.select_related("labeler"))
    ]
    team = AgreementTotals(
        sum(f.agreement_tasks for f in labelers),
        sum(f.agreement_sum for f in labelers),
        sum(f.agreement_sq_sum for f in labelers),
    )
    for figure in labelers:
        figure.team = team
    labelers.sort(key=lambda f: (not f.warnings, f.agreement if f.agreement is not None else 2.0, f.username))
    totals = ProjectRankingStats.objects.filter(project=project).first()
    disputed = (
        RankingTask.objects.filter(project=project, agreement__isnull=False, purpose=TaskPurpose.RANKING)
        .exclude(status=TaskStatus.DISABLED)
    )
    ranking_count = Ranking.objects.filter(task=OuterRef("pk")).order_by().values("task").annotate(n=Count("pk"))
    low = disputed.annotate(ranking_count=Subquery(ranking_count.values("n"))).order_by("agreement", "pk")[:disagreements]
    flag_counts: Counter = Counter()
    for figure in labelers:
        flag_counts.update(figure.flags)
    labels = dict(Flag.choices)
    return ProjectQuality(
        labelers=labelers,
        alpha=krippendorff_alpha_from_coincidences(coincidences_decode(totals.coincidences)) if totals else None,
        mean_task_agreement=disputed.aggregate(mean=Avg("agreement"))["mean"],
        counts=ranking_task_counts(project=project),
        rankings=totals.rankings + totals.imported_rankings if totals else 0,
        disagreements=list(low),
        flags=[(flag, labels.get(flag, flag), n) for flag, n in flag_counts.most_common()],
    )


class WaitingCount(NamedTuple):
    """How many tasks a labeler could still be served, and whether that is the planner's estimate."""

    count: int
    is_estimate: bool


def ranking_tasks_waiting_count(*, project: Project, labeler: AbstractBaseUser) -> WaitingCount:
    """Return roughly how many tasks the labeler could still be served (the project page's badge).

    Exact while the project has at most EXACT_COUNT_LIMIT open tasks; above, the planner's estimate
    of open tasks less those the labeler ranked or skipped (read through the labeler's own rows),
    since counting every open task's rankings and leases costs seconds at a million tasks; then
    ``is_estimate`` is true and the page says so.
    """
    open_tasks = RankingTask.objects.filter(project=project, status=TaskStatus.OPEN)
    total, estimated = count_or_estimate(open_tasks.filter(is_gold=False))
    if estimated:
        done = Ranking.objects.filter(labeler=labeler, task__project=project, task__status=TaskStatus.OPEN).count()
        skipped = Skip.objects.filter(labeler=labeler, task__project=project, task__status=TaskStatus.OPEN).count()
        return WaitingCount(max(total - done - skipped, 0), is_estimate=True)
    now = timezone.now()
    exact = (
        open_tasks.exclude(pk__in=Ranking.objects.filter(labeler=labeler).values("task"))
        .exclude(pk__in=Skip.objects.filter(labeler=labeler).values("task"))
        .exclude(pk__in=Response.objects.filter(created_by=labeler).values("task"))
        .annotate(
            taken=Count("rankings", distinct=True)
            + Count("leases", filter=Q(leases__expires_at__gt=now) & ~Q(leases__labeler=labeler), distinct=True)
        )
        .filter(Q(is_gold=True) | Q(taken__lt=project.rankings_per_task))
        .count()
    )
    return WaitingCount(exact, is_estimate=False)
