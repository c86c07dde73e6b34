"""Writes for ranking tasks: create, consensus, gold, enable/disable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotation.models import Project, Prompt
from config.exceptions import ApplicationError
from ranking.models import (
    MAX_RESPONSES,
    MIN_RESPONSES,
    Ranking,
    RankingTask,
    Response,
    TaskPurpose,
    TaskSource,
    TaskStatus,
)
from ranking.services.agreement import mean_pairwise_tau_b
from ranking.services.consensus import ranked_pairs
from ranking.services.orderings import OrderingError, ordering_check, ordering_normalise
from ranking.services.stats import ranking_task_stats_sync

HUMAN_GENERATOR = "human"


@dataclass(frozen=True)
class ResponseSpec:
    """An answer to create: its text, what produced it and, when a person wrote it, who."""

    content: str
    generator: str = ""
    author: AbstractBaseUser | None = None


def response_author_resolve(*, generator: str, creator: AbstractBaseUser | None) -> AbstractBaseUser | None:
    """Return the person who wrote an answer from its generator: "human" is the creator, "human:NAME" that user."""
    if generator == HUMAN_GENERATOR:
        return creator
    if generator.startswith(HUMAN_GENERATOR + ":"):
        username = generator.split(":", 1)[1]
        return get_user_model().objects.filter(username=username).first()
    return None


def ranking_task_build(
    *,
    project: Project,
    context: list,
    responses: Sequence[ResponseSpec],
    is_gold: bool = False,
    gold_positions: list | None = None,
    source: str = TaskSource.API,
    created_by: AbstractBaseUser | None = None,
    prompt: Prompt | None = None,
) -> tuple[RankingTask, list[Response]]:
    """Validate a task and its answers without saving; raise ValidationError saying what is wrong.

    ``gold_positions`` is the gold ranking in answer positions (0-based, as given), since the answers
    have no ids yet; it is required for a gold task. With a ``prompt`` and no ``context``, the
    context is the prompt as a single user turn.
    """
    if prompt is not None and not context:
        context = [{"role": "user", "content": prompt.text}]
    if not MIN_RESPONSES <= len(responses) <= MAX_RESPONSES:
        raise ValidationError(
            f"A ranking task needs {MIN_RESPONSES} to {MAX_RESPONSES} answers; got {len(responses)}."
        )
    task = RankingTask(
        project=project, context=context, is_gold=is_gold, source=source, created_by=created_by, prompt=prompt
    )
    task.full_clean(exclude=["project", "created_by", "gold_order", "context"])  # clean() checks context
    built = []
    for position, spec in enumerate(responses):
        response = Response(task=task, content=spec.content, generator=spec.generator or "", position=position,
                            created_by=spec.author)
        try:
            response.full_clean(exclude=["task", "created_by"])
        except ValidationError as error:
            raise ValidationError(f"responses[{position}]: {' '.join(error.messages)}") from None
        built.append(response)
    if gold_positions is not None:
        try:
            task.gold_order = ordering_check(gold_positions, item_ids=range(len(responses)))
        except OrderingError as error:
            raise ValidationError(f"gold_order (answer positions, 0-based): {error}") from None
    if is_gold and gold_positions is None:
        raise ValidationError("A gold task needs gold_order: its known ranking, in answer positions (0-based).")
    return task, built


def ranking_tasks_save(*, built: Sequence[tuple[RankingTask, list[Response]]]) -> list[RankingTask]:
    """Save built tasks and their answers in bulk, turning gold positions into response ids. Caller holds a transaction."""
    tasks = RankingTask.objects.bulk_create([task for task, _ in built], batch_size=500)
    responses = []
    for task, answers in built:
        for answer in answers:
            answer.task = task
            responses.append(answer)
    Response.objects.bulk_create(responses, batch_size=1000)
    gold_tasks = []
    for task, answers in built:
        if task.gold_order is not None:
            ids = [answer.pk for answer in answers]
            task.gold_order = ordering_normalise([[ids[position] for position in group] for group in task.gold_order])
            gold_tasks.append(task)
    if gold_tasks:
        RankingTask.objects.bulk_update(gold_tasks, ["gold_order"], batch_size=500)
    return tasks


@transaction.atomic
def ranking_task_create(
    *,
    project: Project,
    context: list,
    responses: Sequence[ResponseSpec],
    is_gold: bool = False,
    gold_positions: list | None = None,
    source: str = TaskSource.API,
    created_by: AbstractBaseUser | None = None,
    prompt: Prompt | None = None,
) -> RankingTask:
    """Create a ranking task with its answers (K = 2…9), optionally for a queue ``prompt`` of the project."""
    if project.is_archived:
        raise ApplicationError("The project is archived: it takes no new tasks.")
    built = ranking_task_build(
        project=project, context=context, responses=responses, is_gold=is_gold, gold_positions=gold_positions,
        source=source, created_by=created_by, prompt=prompt,
    )
    [task] = ranking_tasks_save(built=[built])
    return task


def ranking_task_consensus_refresh(*, task: RankingTask) -> RankingTask:
    """Recompute the task's consensus and agreement from its rankings and set its status.

    A non-gold task is complete once it holds ``project.rankings_per_task`` rankings; gold tasks stay
    open (every labeler meets each once) and get a consensus as soon as they have rankings.
    The caller should hold the task's row lock (``select_for_update``) when rankings may arrive meanwhile.
    """
    orders = list(task.rankings.order_by("pk").values_list("order", flat=True))
    item_ids = list(task.responses.values_list("pk", flat=True))
    required = task.project.rankings_per_task
    task.rankings_count = len(orders)  # the caller holds the row lock (see ranking.services.leasing)
    fields = ["consensus_order", "agreement", "consensus_at", "status", "rankings_count"]
    if orders and (task.is_gold or len(orders) >= required):
        task.consensus_order = ranked_pairs(orders, items=item_ids)
        task.consensus_at = timezone.now()
    else:
        task.consensus_order = task.consensus_at = None
    # from the second ranking on, not only once complete: the quality page lists a task two labelers
    # disagree on while it waits for its last ranking (it said "no task has two rankings" before)
    task.agreement = mean_pairwise_tau_b(orders)
    if task.status != TaskStatus.DISABLED:
        complete = not task.is_gold and len(orders) >= required
        task.status = TaskStatus.COMPLETE if complete else TaskStatus.OPEN
    task.save(update_fields=fields)
    ranking_task_stats_sync(task=task)
    return task


@transaction.atomic
def ranking_tasks_consensus_recompute(*, task_ids: Sequence[int]) -> int:
    """Recompute consensus, agreement and status of these tasks (after a rule change or an edit). Return the count."""
    count = 0
    for task in RankingTask.objects.select_for_update().select_related("project").filter(pk__in=task_ids):
        ranking_task_consensus_refresh(task=task)
        count += 1
    return count


@transaction.atomic
def ranking_task_gold_set(*, task: RankingTask, order: list | None) -> RankingTask:
    """Make the task gold with ``order`` (groups of response ids), or ordinary again when ``order`` is None."""
    task = RankingTask.objects.select_for_update().select_related("project").get(pk=task.pk)
    if order is not None and task.purpose == TaskPurpose.EVALUATION:
        raise ApplicationError("An evaluation task can't be gold: its judgements measure models, not labelers.")
    if order is None:
        task.is_gold, task.gold_order = False, None
    else:
        try:
            checked = ordering_check(order, item_ids=task.responses.values_list("pk", flat=True))
        except OrderingError as error:
            raise ApplicationError(str(error)) from None
        if len(checked) < 2:
            raise ApplicationError("A gold ranking must prefer at least one answer to another (not all tied).")
        task.is_gold, task.gold_order = True, ordering_normalise(checked)
    task.save(update_fields=["is_gold", "gold_order"])
    return ranking_task_consensus_refresh(task=task)


@transaction.atomic
def ranking_task_gold_from_consensus(*, task: RankingTask) -> RankingTask:
    """Make the task gold, its known ranking being its current consensus."""
    if not task.consensus_order or len(task.consensus_order) < 2:
        raise ApplicationError(f"Task {task.pk} has no consensus that prefers one answer to another yet.")
    return ranking_task_gold_set(task=task, order=task.consensus_order)


@transaction.atomic
def ranking_task_disable(*, task: RankingTask, disabled: bool = True) -> RankingTask:
    """Take the task out of the queue (or put it back): a disabled task is served to nobody."""
    task = RankingTask.objects.select_for_update().select_related("project").get(pk=task.pk)
    task.status = TaskStatus.DISABLED if disabled else TaskStatus.OPEN
    task.save(update_fields=["status"])
    if not disabled:
        ranking_task_consensus_refresh(task=task)
    else:
        ranking_task_stats_sync(task=task)  # its rankings leave the figures
    return task


def imported_ranking_create(*, task: RankingTask, order: list[list[int]]) -> Ranking:
    """Attach the human preference an import carried; it counts as one of the task's rankings."""
    ranking = Ranking(task=task, labeler=None, is_imported=True, order=ordering_normalise(order))
    ranking.full_clean(exclude=["labeler"])
    ranking.save()
    return ranking
