"""Reads: how well reward models agree with fresh human rankings, and how well labelers agree with each other.

A reward check (``RewardCheck``) holds, for one completed ranking task and one reward model that had
never trained on it, how many of the task's human preference pairs the model scores the same way.
Here they are summed per model version and per time bucket of the tasks' completion, each share with
its 95 % Wilson interval, beside the ceiling: how often one labeler's ranking orders a pair the way
another labeler's ranking of the same task does.

The interval treats pairs as independent draws. Pairs of one task (and of one labeler) are not, so
the true uncertainty is somewhat wider than the band shows; it is a guide, not a test.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db.models import (
    Count,
    DateField,
    Exists,
    F,
    FloatField,
    Func,
    IntegerField,
    Max,
    Min,
    OuterRef,
    QuerySet,
    Sum,
)
from django.db.models.functions import Trunc
from django.utils import timezone

from annotation.models import Project
from ranking.models import Ranking, RankingTask, TaskPurpose, TaskStatus
from ranking.services.exports import PAIRS_CONSENSUS
from ranking.services.orderings import Ordering, ordering_pairs, ordering_rank_map
from training.models import (
    LoopPolicy,
    ModelKind,
    ModelVersion,
    RewardCheck,
    RunKind,
    RunState,
    SnapshotKind,
    TrainingRun,
)

Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile
BUCKETS = ("day", "week")


# ---- pure helpers ----------------------------------------------------------------------------------------


def wilson_interval(successes: int, total: int, *, z: float = Z_95) -> tuple[float, float] | None:
    """Return the Wilson score interval of the share ``successes / total`` (None when ``total`` is 0).

    centre = (p + z²/2n) / (1 + z²/n), half width = z √(p(1 − p)/n + z²/4n²) / (1 + z²/n).
    Unlike p ± z√(p(1 − p)/n) it stays inside [0, 1] and is not zero wide at 0 % or 100 %.
    """
    if total <= 0:
        return None
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def ranking_pairs_agreement(orders: Sequence[Ordering]) -> tuple[int, int]:
    """Return (agreed, compared): how often one ranking of a task predicts another's preferences.

    Over every ordered pair of rankings (i, j), i ≠ j, and every pair of answers a > b in ranking i:
    the pair is compared when ranking j orders a and b too (a tie in j says nothing: left out), and
    agreed when j also puts a above b. Every two rankings are thus compared both ways, as a reward
    model is compared with every ranking of the task.
    """
    ranks = [ordering_rank_map(order) for order in orders]
    agreed = compared = 0
    for i, order in enumerate(orders):
        for j, rank in enumerate(ranks):
            if i == j:
                continue
            for better, worse, _distance in ordering_pairs(order):
                if better in rank and worse in rank and rank[better] != rank[worse]:
                    compared += 1
                    agreed += rank[better] < rank[worse]
    return agreed, compared


def bucket_start(moment: datetime, *, bucket: str) -> date:
    """Return the first day of the bucket holding ``moment``, in the site's time zone (weeks start on Monday)."""
    day = timezone.localtime(moment).date()
    return day - timedelta(days=day.weekday()) if bucket == "week" else day


# ---- figures ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """Pairs agreed out of pairs compared, over some tasks, with the share's 95 % Wilson interval."""

    tasks: int = 0
    pairs: int = 0
    pairs_agreed: int = 0

    @property
    def share(self) -> float | None:
        return self.pairs_agreed / self.pairs if self.pairs else None

    @property
    def low(self) -> float | None:
        interval = wilson_interval(self.pairs_agreed, self.pairs)
        return interval[0] if interval else None

    @property
    def high(self) -> float | None:
        interval = wilson_interval(self.pairs_agreed, self.pairs)
        return interval[1] if interval else None

    def __add__(self, other: Agreement) -> Agreement:
        return Agreement(
            tasks=self.tasks + other.tasks, pairs=self.pairs + other.pairs,
            pairs_agreed=self.pairs_agreed + other.pairs_agreed,
        )


@dataclass(frozen=True)
class AgreementPoint(Agreement):
    """The figures of one time bucket."""

    start: date | None = None  # the bucket's first day


@dataclass
class ModelAgreement:
    """One reward model version against the fresh rankings it checked."""

    model: ModelVersion
    is_current: bool
    total: Agreement
    mean_margin: float | None  # mean of chosen score − rejected score over its pairs
    first_task_completed_at: datetime | None = None
    last_task_completed_at: datetime | None = None
    last_checked_at: datetime | None = None
    ceiling: Agreement | None = None  # the labelers' agreement on the same tasks
    points: list[AgreementPoint] = field(default_factory=list)


@dataclass
class RewardAgreementReport:
    """Every reward model's agreement per time bucket and the labelers' ceiling over the same period."""

    project: Project
    bucket: str
    current_model: ModelVersion | None
    pending_tasks: int  # fresh completed tasks the current reward model has not checked yet
    check_starts_at: int  # a check starts once this many wait
    active_run: TrainingRun | None
    models: list[ModelAgreement]
    ceiling: Agreement
    ceiling_points: list[AgreementPoint]


# ---- which tasks a reward model may be checked on -------------------------------------------------------


def _lineage(model: ModelVersion) -> Iterable[ModelVersion]:
    """The model, the models it was trained from, and the reward models those were trained against (PPO)."""
    seen: set[int] = set()
    waiting = [model]
    while waiting:
        current = waiting.pop()
        if current.pk in seen:
            continue
        seen.add(current.pk)
        yield current
        if current.parent_id:
            waiting.append(current.parent)
        if current.run_id and current.run.reward_model_id:
            waiting.append(current.run.reward_model)


def reward_model_labels_cutoff(*, model: ModelVersion) -> datetime | None:
    """Return the instant up to which ``model`` may have learnt from this project's rankings (None: from none).

    That is the latest cut of the preference snapshots anywhere in its lineage (a reward model may start
    from another reward model, or from a DPO or PPO policy that learnt from pairs): ``labels_until``, or
    for a consensus snapshot the moment it was written (it takes every consensus there is then). A
    reward or policy model registered from a folder may have learnt from anything made before it was
    registered.
    """
    cutoffs: list[datetime] = []
    for ancestor in _lineage(model):
        snapshot = ancestor.snapshot
        if snapshot is not None and snapshot.kind == SnapshotKind.PREFERENCES:
            consensus = (snapshot.options or {}).get("pairs") == PAIRS_CONSENSUS
            cutoffs.append(max(snapshot.labels_until, snapshot.finished_at or snapshot.labels_until)
                           if consensus else snapshot.labels_until)
        elif ancestor.run_id is None and ancestor.kind in (ModelKind.REWARD, ModelKind.POLICY):
            cutoffs.append(ancestor.created_at)
    return max(cutoffs, default=None)


class JsonArrayLength(Func):
    """The length of a JSON array column, on PostgreSQL (jsonb) and on the embedded SQLite alike."""

    function = "jsonb_array_length"
    output_field = IntegerField()

    def as_sqlite(self, compiler, connection, **extra_context):
        return super().as_sql(compiler, connection, function="json_array_length", **extra_context)


def reward_check_candidates(*, model: ModelVersion) -> QuerySet[RankingTask]:
    """Return the tasks ``model`` should be checked on, oldest completion first.

    Complete (consensus computed), not gold, holding at least one preference (a ranking of two groups
    or more), not checked by this model yet, and every ranking made after the labels the model may
    have learnt from: no reward model in its lineage has trained on them.
    """
    preferring = Ranking.objects.filter(task=OuterRef("pk")).annotate(groups=JsonArrayLength(F("order"))).filter(
        groups__gte=2
    )
    tasks = (
        RankingTask.objects.filter(
            project_id=model.project_id, status=TaskStatus.COMPLETE, is_gold=False, consensus_at__isnull=False,
            purpose=TaskPurpose.RANKING,  # evaluation tasks hold judgements, not preferences to learn
        )
        .filter(Exists(preferring))
        .exclude(Exists(RewardCheck.objects.filter(model=model, task=OuterRef("pk"))))
    )
    cutoff = reward_model_labels_cutoff(model=model)
    if cutoff is not None:
        tasks = tasks.exclude(Exists(Ranking.objects.filter(task=OuterRef("pk"), created_at__lte=cutoff)))
    return tasks.order_by("consensus_at", "pk")


def reward_check_active_run(*, project: Project) -> TrainingRun | None:
    return (
        TrainingRun.objects.filter(project=project, kind=RunKind.SCORE, state__in=RunState.active())
        .order_by("-id").first()
    )


# ---- the labelers' ceiling ------------------------------------------------------------------------------


def _orders_by_task(task_ids) -> dict[int, list]:
    orders: dict[int, list] = defaultdict(list)
    for task_id, order in Ranking.objects.filter(task_id__in=task_ids).order_by("pk").values_list("task_id", "order"):
        orders[task_id].append(order)
    return orders


def labeler_agreement(*, task_ids) -> Agreement:
    """Return the labelers' agreement with each other on these tasks (those with two rankings or more)."""
    total = Agreement()
    for orders in _orders_by_task(task_ids).values():
        if len(orders) >= 2:
            agreed, compared = ranking_pairs_agreement(orders)
            total += Agreement(tasks=1, pairs=compared, pairs_agreed=agreed)
    return total


def _labeler_agreement_by_bucket(
    *, project: Project, bucket: str, since: datetime, until: datetime
) -> dict[date, Agreement]:
    """The labelers' agreement on the project's completed tasks, per bucket of their completion time."""
    completed = dict(
        RankingTask.objects.filter(
            project=project, status=TaskStatus.COMPLETE, is_gold=False, consensus_at__gte=since, consensus_at__lt=until,
        ).values_list("pk", "consensus_at")
    )
    by_bucket: dict[date, Agreement] = defaultdict(Agreement)
    for task_id, orders in _orders_by_task(list(completed)).items():
        if len(orders) >= 2:
            agreed, compared = ranking_pairs_agreement(orders)
            start = bucket_start(completed[task_id], bucket=bucket)
            by_bucket[start] += Agreement(tasks=1, pairs=compared, pairs_agreed=agreed)
    return by_bucket


# ---- per model version and over time --------------------------------------------------------------------


def _mean_margin(margin_sum: float | None, pairs: int | None) -> float | None:
    return margin_sum / pairs if margin_sum is not None and pairs else None


def reward_agreement_for_model(*, model: ModelVersion) -> ModelAgreement | None:
    """Return a reward model's agreement with the fresh rankings it checked and the labelers' on the same tasks.

    None for a model that is not a reward model.
    """
    if model.kind != ModelKind.REWARD:
        return None
    checks = RewardCheck.objects.filter(model=model, pairs__gt=0)
    summary = checks.aggregate(
        checked_tasks=Count("pk"), compared=Sum("pairs"), agreed=Sum("pairs_agreed"),
        margin_sum=Sum(F("mean_margin") * F("pairs"), output_field=FloatField()),
        first=Min("task_completed_at"), last=Max("task_completed_at"), last_checked=Max("checked_at"),
    )
    current = LoopPolicy.objects.filter(project_id=model.project_id, current_reward_model=model).exists()
    return ModelAgreement(
        model=model, is_current=current,
        total=Agreement(tasks=summary["checked_tasks"], pairs=summary["compared"] or 0,
                        pairs_agreed=summary["agreed"] or 0),
        mean_margin=_mean_margin(summary["margin_sum"], summary["compared"]),
        first_task_completed_at=summary["first"], last_task_completed_at=summary["last"],
        last_checked_at=summary["last_checked"],
        ceiling=labeler_agreement(task_ids=checks.values_list("task_id", flat=True)),
    )


def reward_agreement_report(*, project: Project, bucket: str = "day", days: int | None = None) -> RewardAgreementReport:
    """Return every reward model's agreement with fresh rankings per bucket, and the labelers' ceiling.

    ``bucket``: ``day`` or ``week`` of the tasks' completion (site time zone). ``days``: only tasks
    completed in the last that many days. The ceiling covers every completed task (not gold) of the
    period the checks span, so it is there even for a day a model did not check.
    """
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    policy = LoopPolicy.objects.filter(project=project).select_related("current_reward_model").first()
    current = policy.current_reward_model if policy else None
    checks = RewardCheck.objects.filter(project=project, pairs__gt=0)  # a task with no pair to compare says nothing
    if days is not None:
        checks = checks.filter(task_completed_at__gte=timezone.now() - timedelta(days=days))

    rows = (
        checks.annotate(start=Trunc("task_completed_at", bucket, output_field=DateField(),
                                    tzinfo=timezone.get_current_timezone()))
        .values("model_id", "start")
        .annotate(checked=Count("pk"), compared=Sum("pairs"), agreed=Sum("pairs_agreed"),
                  margin_sum=Sum(F("mean_margin") * F("pairs"), output_field=FloatField()))
        .order_by("model_id", "start")
    )
    points: dict[int, list[AgreementPoint]] = defaultdict(list)
    margins: dict[int, list[float]] = defaultdict(lambda: [0.0, 0])
    for row in rows:
        points[row["model_id"]].append(AgreementPoint(
            tasks=row["checked"], pairs=row["compared"] or 0, pairs_agreed=row["agreed"] or 0, start=row["start"]
        ))
        if row["margin_sum"] is not None:
            margins[row["model_id"]][0] += row["margin_sum"]
            margins[row["model_id"]][1] += row["compared"] or 0
    versions = ModelVersion.objects.in_bulk(list(points))
    models = []
    for model_id in sorted(points, key=lambda pk: (points[pk][0].start, pk)):
        total = sum(points[model_id], Agreement())
        margin_sum, margin_pairs = margins[model_id]
        models.append(ModelAgreement(
            model=versions[model_id], is_current=current is not None and current.pk == model_id, total=total,
            mean_margin=_mean_margin(margin_sum, margin_pairs) if margin_pairs else None, points=points[model_id],
        ))

    ceiling_points: list[AgreementPoint] = []
    if models:
        span = checks.aggregate(first=Min("task_completed_at"), last=Max("task_completed_at"))
        first = bucket_start(span["first"], bucket=bucket)
        last = bucket_start(span["last"], bucket=bucket) + timedelta(days=7 if bucket == "week" else 1)
        zone = timezone.get_current_timezone()
        since = datetime.combine(first, datetime.min.time(), tzinfo=zone)
        until = datetime.combine(last, datetime.min.time(), tzinfo=zone)
        by_bucket = _labeler_agreement_by_bucket(project=project, bucket=bucket, since=since, until=until)
        ceiling_points = [
            AgreementPoint(tasks=figures.tasks, pairs=figures.pairs, pairs_agreed=figures.pairs_agreed, start=start)
            for start, figures in sorted(by_bucket.items())
        ]
    return RewardAgreementReport(
        project=project, bucket=bucket, current_model=current,
        pending_tasks=reward_check_candidates(model=current).count() if current else 0,
        check_starts_at=settings.RLHF_REWARD_CHECK_MIN_TASKS,
        active_run=reward_check_active_run(project=project),
        models=models,
        ceiling=sum(ceiling_points, Agreement()),
        ceiling_points=ceiling_points,
    )
