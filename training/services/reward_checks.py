"""Reward model checks: the current reward model scores ranking tasks it never trained on, as they complete.

Every few minutes (beat, ``RLHF_REWARD_CHECK_SECONDS``) and right after a reward model is promoted,
``reward_check_start`` looks for completed tasks the project's current reward model has not checked
and whose rankings all came after the labels it may have learnt from; once
``RLHF_REWARD_CHECK_MIN_TASKS`` of them wait, it starts a ``score`` run on a preferences snapshot of
just those tasks. When the run succeeds, ``reward_check_ingest_for_run`` turns its scores.jsonl into
``RewardCheck`` rows inside the transaction that settles the run, so each (model, task) is counted
once. Checks only measure: no snapshot a model trains on is affected by them.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from annotation.models import Project
from config.exceptions import ApplicationError, ConflictError
from ranking.models import RankingTask
from ranking.services.exports import PAIRS_LABELER
from training.models import LoopPolicy, RewardCheck, RunKind, RunTrigger, TrainingRun
from training.selectors.reward_agreement import reward_check_active_run, reward_check_candidates
from training.services.runs import run_trigger

logger = logging.getLogger(__name__)

MAX_TASKS_PER_CHECK = 5000  # a larger backlog is checked over several runs
SCORES_FILE = "scores.jsonl"


def reward_check_start(
    *, project: Project, min_tasks: int | None = None, created_by: AbstractBaseUser | None = None
) -> TrainingRun | None:
    """Start a score run of the project's current reward model on the tasks waiting for it; return the run.

    Nothing starts (None) without a current reward model, while a check runs, or with fewer than
    ``min_tasks`` (default ``RLHF_REWARD_CHECK_MIN_TASKS``) tasks waiting. Raise ApplicationError when
    the run can't be made (e.g. the project's ``score`` template is one the engine refuses).
    """
    if project.is_archived:
        return None
    policy = LoopPolicy.objects.filter(project=project).select_related("current_reward_model").first()
    model = policy.current_reward_model if policy else None
    if model is None or reward_check_active_run(project=project) is not None:
        return None
    need = max(1, settings.RLHF_REWARD_CHECK_MIN_TASKS if min_tasks is None else min_tasks)
    task_ids = list(reward_check_candidates(model=model).values_list("pk", flat=True)[:MAX_TASKS_PER_CHECK])
    if len(task_ids) < need:
        return None
    try:
        run = run_trigger(
            project=project, kind=RunKind.SCORE, input_model=model, trigger=RunTrigger.LOOP, created_by=created_by,
            snapshot_options={"pairs": PAIRS_LABELER, "include_all_bad": True, "task_ids": task_ids},
        )
    except ConflictError:  # another tick started one at the same instant
        return None
    logger.info("reward check run %s: %s scores %s tasks", run.pk, model.name, len(task_ids))
    return run


def reward_checks_start(*, project_ids: list[int] | None = None) -> dict[int, str]:
    """Start a check in every project (or these) whose current reward model has enough tasks waiting.

    Return, per project looked at, what happened in words. A project whose check can't start is
    logged and named in the result; the others still start theirs.
    """
    policies = LoopPolicy.objects.filter(current_reward_model__isnull=False, project__is_archived=False)
    if project_ids is not None:
        policies = policies.filter(project_id__in=project_ids)
    outcome: dict[int, str] = {}
    for project in Project.objects.filter(pk__in=policies.values("project_id")).order_by("pk"):
        try:
            run = reward_check_start(project=project)
        except ApplicationError as error:
            logger.warning("reward check of project %s could not start: %s", project.pk, error.message)
            outcome[project.pk] = f"refused: {error.message}"
            continue
        outcome[project.pk] = f"score run {run.pk}" if run else "nothing to check"
    return outcome


def reward_check_ingest_for_run(*, run: TrainingRun, folder: Path | None) -> int:
    """Turn a succeeded score run's scores into RewardCheck rows, once per (model, task); return how many.

    The caller holds the run's transaction (``run_settle``). Only the tasks the run's snapshot was
    restricted to count: a score run started by hand on a whole snapshot may hold pairs its model
    trained on, so it records no check. A task no longer complete (reopened, disabled) is left out;
    one the snapshot held no pair of (the export leaves it out) is recorded with no pairs, so that it
    is not asked for again.
    """
    if run.kind != RunKind.SCORE or run.input_model_id is None or run.snapshot_id is None:
        return 0
    task_ids = set((run.snapshot.options or {}).get("task_ids") or [])
    if not task_ids:
        return 0
    per_task = {task_id: [0, 0, 0.0] for task_id in task_ids}  # task -> [pairs, agreed, margin sum]
    for row in _rows(Path(folder or "") / run.config.get("output_file", SCORES_FILE)):
        task_id, chosen, rejected = row.get("task"), row.get("chosen_score"), row.get("rejected_score")
        if task_id not in task_ids or not _number(chosen) or not _number(rejected):
            continue
        agrees = row["agrees"] if isinstance(row.get("agrees"), bool) else chosen > rejected
        figures = per_task[task_id]
        figures[0] += 1
        figures[1] += int(agrees)
        figures[2] += chosen - rejected
    completed = dict(
        RankingTask.objects.filter(pk__in=list(per_task), project_id=run.project_id, consensus_at__isnull=False)
        .values_list("pk", "consensus_at")
    )
    now = timezone.now()
    checks = [
        RewardCheck(
            project_id=run.project_id, model_id=run.input_model_id, task_id=task_id, run=run, pairs=pairs,
            pairs_agreed=agreed, mean_margin=margin_sum / pairs if pairs else None,
            task_completed_at=completed[task_id], checked_at=now,
        )
        for task_id, (pairs, agreed, margin_sum) in sorted(per_task.items())
        if task_id in completed
    ]
    RewardCheck.objects.bulk_create(checks, batch_size=1000, ignore_conflicts=True)
    logger.info("score run %s: %s reward checks of %s", run.pk, len(checks), run.input_model_id)
    return len(checks)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _rows(path: Path) -> Iterator[dict]:
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
