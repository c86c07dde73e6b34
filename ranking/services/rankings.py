"""Writes for rankings: a labeler submits their ordering of a task's answers."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from config.exceptions import ApplicationError, ConflictError
from ranking.models import SCORE_MAX, SCORE_MIN, Flag, Lease, Ranking, RankingTask, TaskPurpose, TaskStatus
from ranking.services.leasing import ranking_task_counts_refresh, ranking_task_slots_taken
from ranking.services.orderings import OrderingError, ordering_check, ordering_normalise
from ranking.services.tasks import ranking_task_consensus_refresh

MAX_TIME_SPENT_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class SubmitResult:
    ranking: Ranking
    created: bool  # False when an Idempotency-Key retry returned the first submission


def _response_key(key: object, *, response_ids: set[int], field: str) -> str:
    try:
        response_id = int(key)  # JSON object keys arrive as strings
    except (TypeError, ValueError):
        raise ApplicationError(f"{field}: {key!r} is not a response id.") from None
    if response_id not in response_ids:
        raise ApplicationError(f"{field}: {response_id} is not an answer of this task.")
    return str(response_id)


def ranking_flags_check(flags: object, *, response_ids: set[int]) -> dict[str, list[str]]:
    """Return ``{response id: [flag, …]}`` with known flags only (sorted, no duplicates, empty lists dropped)."""
    if flags in (None, ""):
        return {}
    if not isinstance(flags, dict):
        raise ApplicationError("flags must be an object {response_id: [flag, …]}.")
    checked: dict[str, list[str]] = {}
    for key, values in flags.items():
        response_key = _response_key(key, response_ids=response_ids, field="flags")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ApplicationError(f"flags[{response_key}] must be a list of flag names.")
        unknown = sorted(set(values) - set(Flag.values))
        if unknown:
            raise ApplicationError(
                f"flags[{response_key}]: unknown flag(s) {', '.join(unknown)}; known: {', '.join(Flag.values)}."
            )
        if values:
            checked[response_key] = sorted(set(values))
    return checked


def ranking_scores_check(scores: object, *, response_ids: set[int]) -> dict[str, int]:
    """Return ``{response id: score}`` with every score an integer from 1 to 7."""
    if scores in (None, ""):
        return {}
    if not isinstance(scores, dict):
        raise ApplicationError("scores must be an object {response_id: 1..7}.")
    checked: dict[str, int] = {}
    for key, value in scores.items():
        response_key = _response_key(key, response_ids=response_ids, field="scores")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not SCORE_MIN <= value <= SCORE_MAX:
            raise ApplicationError(f"scores[{response_key}] must be an integer from {SCORE_MIN} to {SCORE_MAX}.")
        checked[response_key] = value
    return checked


def judgement_check(order: list[list[int]]) -> None:
    """Raise unless an evaluation task's order picks one best answer (the rest behind it) or ties them all."""
    if len(order) == 1 or (len(order) == 2 and len(order[0]) == 1):
        return
    raise ApplicationError(
        "This is an evaluation task: pick the one best answer, [[best], [every other answer]], or call a tie, "
        "[[every answer]]."
    )


def ranking_submit(
    *,
    task: RankingTask,
    labeler: AbstractBaseUser,
    order: object,
    flags: object = None,
    scores: object = None,
    all_bad: bool = False,
    time_spent_ms: int = 0,
    idempotency_key: str = "",
) -> SubmitResult:
    """Record the labeler's ranking of ``task``, release their lease and, when it completes the task, its consensus.

    ``order`` must hold every answer of the task exactly once (groups of ids, best first). A retry
    with the same ``idempotency_key`` returns the first ranking instead of failing. The labeler
    needs a live lease on the task, or the task must still need a ranking beyond others' leases.
    """
    idempotency_key = (idempotency_key or "").strip()[:100]
    if isinstance(time_spent_ms, bool) or not isinstance(time_spent_ms, int) or time_spent_ms < 0:
        raise ApplicationError("time_spent_ms must be a non-negative integer (milliseconds).")
    time_spent_ms = min(time_spent_ms, MAX_TIME_SPENT_MS)
    with transaction.atomic():
        # the row lock serialises every ranking and lease of this task (see ranking.services.leasing)
        task = RankingTask.objects.select_for_update().select_related("project").get(pk=task.pk)
        if idempotency_key:
            first = Ranking.objects.filter(labeler=labeler, idempotency_key=idempotency_key).first()
            if first is not None:
                if first.task_id != task.pk:
                    raise ConflictError(
                        f"This Idempotency-Key was already used for your ranking of task {first.task_id}."
                    )
                return SubmitResult(ranking=first, created=False)
        response_ids = set(task.responses.values_list("pk", flat=True))
        try:
            checked_order = ordering_check(order, item_ids=response_ids)
        except OrderingError as error:
            raise ApplicationError(str(error)) from None
        if task.purpose == TaskPurpose.EVALUATION:
            judgement_check(checked_order)
        checked_flags = ranking_flags_check(flags, response_ids=response_ids)
        checked_scores = ranking_scores_check(scores, response_ids=response_ids)
        _check_may_rank(task=task, labeler=labeler)
        ranking = Ranking(
            task=task,
            labeler=labeler,
            order=ordering_normalise(checked_order),
            flags=checked_flags,
            scores=checked_scores,
            all_bad=bool(all_bad),
            time_spent_ms=time_spent_ms,
            idempotency_key=idempotency_key,
        )
        ranking.full_clean(validate_constraints=False)
        try:
            with transaction.atomic():
                ranking.save()
        except IntegrityError:
            raise ConflictError("You already ranked this task.") from None
        Lease.objects.filter(task=task, labeler=labeler).delete()
        ranking_task_counts_refresh(task_ids=[task.pk])
        ranking_task_consensus_refresh(task=task)
    return SubmitResult(ranking=ranking, created=True)


def _check_may_rank(*, task: RankingTask, labeler: AbstractBaseUser) -> None:
    """Raise unless the labeler may add a ranking to ``task``; the caller holds the task's row lock."""
    if task.status == TaskStatus.DISABLED:
        raise ConflictError("This task was taken out of the queue by a manager.")
    if task.responses.filter(created_by=labeler).exists():
        raise ApplicationError("You wrote one of these answers, so you can't rank this task.")
    if task.rankings.filter(labeler=labeler).exists():
        raise ConflictError("You already ranked this task.")
    if task.is_gold:
        return
    now = timezone.now()
    holds_lease = Lease.objects.filter(task=task, labeler=labeler, expires_at__gt=now).exists()
    if task.status == TaskStatus.COMPLETE or (
        not holds_lease
        and ranking_task_slots_taken(task=task, now=now, exclude_labeler=labeler) >= task.project.rankings_per_task
    ):
        raise ConflictError("This task already has the rankings it needs (your lease may have expired). Take the next one.")
