"""Reads for ranking: tasks as a user may see them, the shown order, labeler stats and project quality."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from statistics import fmean, median

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from annotation.models import Project, Role
from annotation.selectors import membership_get, user_can_use_training_api
from config.ids import parse_object_id
from ranking.models import Flag, Lease, Ranking, RankingTask, Response, Skip, TaskPurpose, TaskStatus
from ranking.services.agreement import kendall_tau_b, krippendorff_alpha_ordinal, pairwise_accuracy
from ranking.services.consensus import ranked_pairs
from ranking.services.orderings import ordering_fractional_ranks

# A labeler is highlighted on the quality page past these limits (with enough tasks to judge).
LOW_AGREEMENT = 0.2
LOW_GOLD_ACCURACY = 0.7
FAST_MEDIAN_MS = 5_000
MIN_TASKS_TO_JUDGE = 3


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
    tasks = RankingTask.objects.filter(project=project).annotate(ranking_count=Count("rankings", distinct=True))
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
    """Return how many tasks the project has, by status, and how many are gold."""
    return RankingTask.objects.filter(project=project).aggregate(
        total=Count("pk"),
        open=Count("pk", filter=Q(status=TaskStatus.OPEN, is_gold=False)),
        complete=Count("pk", filter=Q(status=TaskStatus.COMPLETE)),
        gold=Count("pk", filter=Q(is_gold=True)),
        disabled=Count("pk", filter=Q(status=TaskStatus.DISABLED)),
    )


@dataclass
class LabelerFigures:
    """What the quality page and "My stats" show about one labeler of a project."""

    labeler_id: int
    username: str = ""
    ranked: int = 0
    ranked_today: int = 0
    skipped: int = 0
    all_bad: int = 0
    times_ms: list[int] = field(default_factory=list, repr=False)
    agreements: list[float] = field(default_factory=list, repr=False)
    gold_hits: int = 0
    gold_pairs: int = 0
    gold_tasks: int = 0
    flags: Counter = field(default_factory=Counter, repr=False)

    @property
    def agreement(self) -> float | None:
        """Mean Kendall tau-b with the (leave-one-out) consensus of complete tasks."""
        return fmean(self.agreements) if self.agreements else None

    @property
    def agreement_tasks(self) -> int:
        return len(self.agreements)

    @property
    def gold_accuracy(self) -> float | None:
        """Share of the gold rankings' preferences this labeler ordered the same way."""
        return self.gold_hits / self.gold_pairs if self.gold_pairs else None

    @property
    def median_time_ms(self) -> float | None:
        return median(self.times_ms) if self.times_ms else None

    @property
    def all_bad_share(self) -> float | None:
        return self.all_bad / self.ranked if self.ranked else None

    @property
    def warnings(self) -> list[str]:
        """Why a manager should look at this labeler (empty when nothing stands out)."""
        found = []
        if self.agreement is not None and self.agreement_tasks >= MIN_TASKS_TO_JUDGE and self.agreement < LOW_AGREEMENT:
            found.append("low agreement")
        if self.gold_accuracy is not None and self.gold_tasks >= 1 and self.gold_accuracy < LOW_GOLD_ACCURACY:
            found.append("misses gold")
        if self.median_time_ms is not None and self.ranked >= MIN_TASKS_TO_JUDGE and self.median_time_ms < FAST_MEDIAN_MS:
            found.append("very fast")
        return found


def _figures(*, project: Project, labeler: AbstractBaseUser | None = None) -> tuple[dict[int, LabelerFigures], dict]:
    """Compute every labeler's figures (or only ``labeler``'s) and the raw per-task data behind them."""
    rankings = Ranking.objects.filter(task__project=project).exclude(task__status=TaskStatus.DISABLED)
    tasks = RankingTask.objects.filter(project=project).exclude(status=TaskStatus.DISABLED)
    if labeler is not None:
        tasks = tasks.filter(rankings__labeler=labeler)
        rankings = rankings.filter(task__in=tasks.values("pk"))
    task_info = {
        row[0]: row[1:]
        for row in tasks.values_list("pk", "is_gold", "gold_order", "consensus_order", "agreement")
    }
    # evaluation tasks (pick one or tie) count as work done, but not toward agreement: their judgements
    # rank model versions, not answers for the reward model
    evaluation_tasks = set(tasks.filter(purpose=TaskPurpose.EVALUATION).values_list("pk", flat=True))
    items: dict[int, list[int]] = defaultdict(list)
    for task_id, response_id in Response.objects.filter(task__in=tasks.values("pk")).values_list("task_id", "pk"):
        items[task_id].append(response_id)
    by_task: dict[int, list[tuple]] = defaultdict(list)
    for row in rankings.order_by("pk").values_list(
        "task_id", "labeler_id", "order", "time_spent_ms", "all_bad", "flags", "created_at"
    ):
        by_task[row[0]].append(row[1:])

    today = timezone.localdate()
    figures: dict[int, LabelerFigures] = {}

    def of(labeler_id: int) -> LabelerFigures:
        return figures.setdefault(labeler_id, LabelerFigures(labeler_id=labeler_id))

    for task_id, task_rankings in by_task.items():
        is_gold, gold_order, consensus, _agreement = task_info[task_id]
        for index, (labeler_id, order, time_ms, all_bad, flags, created_at) in enumerate(task_rankings):
            if labeler_id is None or (labeler is not None and labeler_id != labeler.pk):
                continue  # imported preferences have no labeler
            figure = of(labeler_id)
            figure.ranked += 1
            figure.ranked_today += timezone.localdate(created_at) == today
            figure.all_bad += bool(all_bad)
            figure.times_ms.append(time_ms)
            for values in (flags or {}).values():
                figure.flags.update(values)
            if is_gold and gold_order:
                hits, total = pairwise_accuracy(order, reference=gold_order)
                figure.gold_hits += hits
                figure.gold_pairs += total
                figure.gold_tasks += 1
            elif consensus is not None and task_id not in evaluation_tasks:
                others = [other[1] for j, other in enumerate(task_rankings) if j != index]
                if others:
                    # leave-one-out: the labeler's own ranking doesn't vote for the consensus it is compared with
                    tau = kendall_tau_b(order, ranked_pairs(others, items=items[task_id]))
                    if tau is not None:
                        figure.agreements.append(tau)
    skips = Skip.objects.filter(task__project=project)
    if labeler is not None:
        skips = skips.filter(labeler=labeler)
    for labeler_id, count in skips.values_list("labeler_id").annotate(n=Count("pk")).values_list("labeler_id", "n"):
        of(labeler_id).skipped = count
    names = dict(get_user_model().objects.filter(pk__in=figures).values_list("pk", "username"))
    for figure in figures.values():
        figure.username = names.get(figure.labeler_id, "")
    return figures, {"by_task": by_task, "task_info": task_info, "evaluation_tasks": evaluation_tasks}


def labeler_stats(*, project: Project, labeler: AbstractBaseUser) -> LabelerFigures:
    """Return one labeler's figures in ``project`` ("My stats")."""
    figures, _ = _figures(project=project, labeler=labeler)
    return figures.get(labeler.pk) or LabelerFigures(labeler_id=labeler.pk, username=labeler.get_username())


def project_krippendorff_alpha(*, by_task: dict[int, list[tuple]]) -> float | None:
    """Krippendorff's alpha (ordinal) of the project: every answer is a unit, its rank from each ranking a value.

    Ranks are fractional (tied answers share the mean of their places), so rankings with and
    without ties compare on one scale. Tasks with a single ranking have nothing to agree on.
    """
    units = []
    for task_rankings in by_task.values():
        if len(task_rankings) < 2:
            continue
        ranks = [ordering_fractional_ranks(row[1]) for row in task_rankings]
        for item in ranks[0]:
            units.append([rank[item] for rank in ranks if item in rank])
    return krippendorff_alpha_ordinal(units)


@dataclass
class ProjectQuality:
    labelers: list[LabelerFigures]
    alpha: float | None
    mean_task_agreement: float | None
    counts: dict[str, int]
    rankings: int
    disagreements: list[RankingTask]  # complete tasks with the lowest agreement first
    flags: list[tuple[str, str, int]]  # (flag, label, count), most frequent first


def project_ranking_quality(*, project: Project, disagreements: int = 10) -> ProjectQuality:
    """Return what a manager needs to judge the project's rankings and find careless labelers."""
    figures, raw = _figures(project=project)
    labelers = sorted(
        figures.values(),
        key=lambda f: (not f.warnings, f.agreement if f.agreement is not None else 2.0, f.username),
    )
    evaluation_tasks = raw["evaluation_tasks"]
    agreements = [
        info[3] for task_id, info in raw["task_info"].items() if info[3] is not None and task_id not in evaluation_tasks
    ]
    low = (
        RankingTask.objects.filter(project=project, agreement__isnull=False, purpose=TaskPurpose.RANKING)
        .exclude(status=TaskStatus.DISABLED)
        .annotate(ranking_count=Count("rankings"))
        .order_by("agreement", "pk")[:disagreements]
    )
    flag_counts: Counter = Counter()
    for figure in figures.values():
        flag_counts.update(figure.flags)
    labels = dict(Flag.choices)
    return ProjectQuality(
        labelers=labelers,
        alpha=project_krippendorff_alpha(
            by_task={task_id: rows for task_id, rows in raw["by_task"].items() if task_id not in evaluation_tasks}
        ),
        mean_task_agreement=fmean(agreements) if agreements else None,
        counts=ranking_task_counts(project=project),
        rankings=sum(len(rows) for rows in raw["by_task"].values()),
        disagreements=list(low),
        flags=[(flag, labels.get(flag, flag), n) for flag, n in flag_counts.most_common()],
    )


def ranking_tasks_waiting_count(*, project: Project, labeler: AbstractBaseUser) -> int:
    """Return roughly how many tasks the labeler could still be served (for the project page)."""
    now = timezone.now()
    return (
        RankingTask.objects.filter(project=project, status=TaskStatus.OPEN)
        .exclude(pk__in=Ranking.objects.filter(labeler=labeler).values("task"))
        .exclude(pk__in=Skip.objects.filter(labeler=labeler).values("task"))
        .exclude(pk__in=Response.objects.filter(created_by=labeler).values("task"))
        .annotate(
            taken=Count("rankings", distinct=True)
            + Count("leases", filter=Q(leases__expires_at__gt=now) & ~Q(leases__labeler=labeler), distinct=True)
        )
        .filter(Q(is_gold=True) | Q(taken__lt=project.rankings_per_task))
        .count()
    )
