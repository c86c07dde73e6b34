"""Evaluations: model versions answer the same held-out prompts and people pick the better answer (or a tie).

``evaluation_start`` holds out the prompts, freezes them into one prompts snapshot and starts one
``sample`` run per model (one answer per prompt). When a run succeeds, ``evaluation_answers_ingest_for_run``
runs inside the transaction that settles it; the last run to succeed turns the answers into evaluation
tasks: one per prompt, one answer per model (its generator names the model), served to labelers like
any ranking task but judged "pick one or tie". Their judgements never train anything: preference
exports, snapshots and the loop's rankings threshold leave evaluation tasks out.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from pathlib import Path

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from annotation.models import Dialogue, Project, Prompt
from config.exceptions import ApplicationError
from ranking.models import MAX_RESPONSES, RankingTask, TaskPurpose, TaskSource
from ranking.services.tasks import ResponseSpec, ranking_task_build, ranking_tasks_save
from training.models import (
    Evaluation,
    EvaluationEntry,
    ModelKind,
    ModelVersion,
    RunKind,
    RunState,
    RunTrigger,
    SnapshotKind,
    TrainingRun,
)
from training.services.runs import run_trigger
from training.services.snapshots import snapshot_request
from training.services.storage import data_path

MIN_MODELS = 2
MAX_MODELS = MAX_RESPONSES  # one answer per model in a task
MAX_PROMPTS = 1000


def evaluation_prompts_pick(*, project: Project, count: int) -> list[Prompt]:
    """Return up to ``count`` held-out prompts of the project, holding out fresh ones when too few are.

    Prompts held out already come first, oldest first, so evaluations judge on the same test set and
    their results compare. When there are fewer than ``count``, the newest fresh prompts — active, no
    demonstration written or drafted for them, never sampled into a ranking task — are held out from
    now on (never served for demonstrations, sampled or used by PPO). The caller holds a transaction.
    """
    held = list(Prompt.objects.filter(project=project, held_out=True, is_active=True).order_by("pk")[:count])
    missing = count - len(held)
    if missing > 0:
        fresh = (
            Prompt.objects.filter(project=project, held_out=False, is_active=True)
            .exclude(Exists(Dialogue.objects.filter(prompt=OuterRef("pk"))))
            .exclude(Exists(RankingTask.objects.filter(prompt=OuterRef("pk"))))
            .order_by("-pk")
        )
        # skip_locked: a prompt a labeler is being given right now is not fresh any more
        chosen = list(fresh.select_for_update(skip_locked=True, of=("self",))[:missing])
        Prompt.objects.filter(pk__in=[prompt.pk for prompt in chosen]).update(held_out=True)
        held += sorted(chosen, key=lambda prompt: prompt.pk)
    return held


def _models_check(*, project: Project, models: Sequence[ModelVersion]) -> None:
    if not MIN_MODELS <= len(models) <= MAX_MODELS:
        raise ApplicationError(
            f"An evaluation compares {MIN_MODELS} to {MAX_MODELS} model versions; got {len(models)}.",
            extra={"errors": {"models": [f"give {MIN_MODELS} to {MAX_MODELS} models"]}},
        )
    if len({model.pk for model in models}) != len(models):
        raise ApplicationError("Each model may appear once in an evaluation.", extra={"errors": {"models": ["repeated"]}})
    for model in models:
        if model.project_id != project.pk:
            raise ApplicationError("models: a model belongs to another project.", extra={"errors": {"models": ["foreign"]}})
        if model.kind == ModelKind.REWARD:
            message = f"{model.name} is a reward model: it scores answers, it can't write them."
            raise ApplicationError(message, extra={"errors": {"models": [message]}})


def evaluation_start(
    *,
    project: Project,
    models: Sequence[ModelVersion],
    num_prompts: int,
    config_overrides: dict | None = None,
    trigger: str = RunTrigger.MANUAL,
    created_by: AbstractBaseUser | None = None,
) -> Evaluation:
    """Start an evaluation: each model answers the same ``num_prompts`` held-out prompts once.

    The prompts come from ``evaluation_prompts_pick``; fewer than asked are used when the project has
    no more. Every model samples with the same settings (the loop's ``sample`` template, then
    ``config_overrides``) and the same seed.
    """
    _models_check(project=project, models=models)
    if not 1 <= num_prompts <= MAX_PROMPTS:
        raise ApplicationError(f"num_prompts must be between 1 and {MAX_PROMPTS}.",
                               extra={"errors": {"num_prompts": [f"1 to {MAX_PROMPTS}"]}})
    overrides = dict(config_overrides or {})
    overrides.setdefault("seed", secrets.randbelow(2**31))
    with transaction.atomic():
        prompts = evaluation_prompts_pick(project=project, count=num_prompts)
        if not prompts:
            raise ApplicationError(
                "No prompt to judge on: every prompt has demonstrations or ranking tasks already. Add prompts "
                "to the queue (or mark some held out in admin) first."
            )
        evaluation = Evaluation.objects.create(project=project, trigger=trigger, created_by=created_by)
        evaluation.prompts.set(prompts)
        evaluation.snapshot = snapshot_request(
            project=project, kind=SnapshotKind.PROMPTS, options={"evaluation": evaluation.pk}, created_by=created_by
        )
        evaluation.save(update_fields=["snapshot"])
        for position, model in enumerate(models):
            run = run_trigger(
                project=project, kind=RunKind.SAMPLE, input_model=model, snapshot=evaluation.snapshot,
                config_overrides=overrides, extra_wiring={"num_responses": 1}, trigger=trigger,
                created_by=created_by, dedup_key=f"evaluation:{evaluation.pk}:{model.pk}",
            )
            EvaluationEntry.objects.create(evaluation=evaluation, model=model, run=run, position=position)
    return evaluation


def evaluation_answers_ingest_for_run(*, run: TrainingRun, folder: Path | None) -> bool:
    """If the run samples for an evaluation, make its tasks once every model has answered; say whether it did.

    Called for a succeeded run inside the transaction that settles it (its state is saved after this).
    The evaluation's row lock serialises its runs settling at the same moment: the last one makes the
    tasks, exactly once. A prompt makes a task only when every model answered it (``prompts_skipped``
    counts the others).
    """
    entry = EvaluationEntry.objects.filter(run=run).first()
    if entry is None:
        return False
    evaluation = Evaluation.objects.select_for_update().select_related("project").get(pk=entry.evaluation_id)
    if evaluation.ingested_at is not None:
        return True
    entries = list(evaluation.entries.select_related("model", "run").order_by("position"))
    if any(other.run_id != run.pk and other.run.state != RunState.SUCCEEDED for other in entries):
        return True  # the last model to finish makes the tasks
    answers: dict[int, dict[int, str]] = {}
    for other in entries:
        other_folder = Path(folder) if other.run_id == run.pk and folder else data_path(other.run.run_dir)
        for row in _rows(other_folder / other.run.config.get("output_file", "samples.jsonl")):
            responses = row.get("responses") or []
            content = (responses[0].get("content") or "") if responses else ""
            if isinstance(row.get("id"), int):
                answers.setdefault(row["id"], {})[other.model_id] = content.replace("\x00", "").strip()
    built, skipped = [], 0
    for prompt in evaluation.prompts.order_by("pk"):
        texts = answers.get(prompt.pk, {})
        if not all(texts.get(other.model_id) for other in entries):
            skipped += 1
            continue
        try:
            task, responses = ranking_task_build(
                project=evaluation.project, context=[], prompt=prompt, source=TaskSource.EVALUATION,
                responses=[ResponseSpec(content=texts[other.model_id], generator=other.model.name) for other in entries],
            )
        except ValidationError:
            skipped += 1  # e.g. an answer longer than an answer may be
            continue
        task.purpose = TaskPurpose.EVALUATION
        task.import_hash = hashlib.sha256(f"evaluation:{evaluation.pk}:prompt:{prompt.pk}".encode()).hexdigest()
        built.append((task, responses))
    tasks = ranking_tasks_save(built=built)
    evaluation.tasks.add(*tasks)
    evaluation.tasks_created, evaluation.prompts_skipped = len(tasks), skipped
    evaluation.ingested_at = timezone.now()
    if not tasks:
        evaluation.error = "No prompt got an answer from every model: there is nothing to judge."
    evaluation.save(update_fields=["tasks_created", "prompts_skipped", "ingested_at", "error"])
    return True


def _rows(path: Path):
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
