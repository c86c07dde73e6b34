"""Sampling jobs: a model version answers prompts K times and the answers become ranking tasks.

A job executes as a ``sample`` run; when the run succeeds, ``sampling_job_ingest_for_run`` turns its
samples.jsonl into ranking tasks inside the transaction that settles the run, so the tasks appear
exactly once. Labelers still see the answers shuffled and unnamed; the generator is recorded per answer.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotation.models import Project, Prompt
from config.exceptions import ApplicationError
from ranking.models import MAX_RESPONSES, MIN_RESPONSES, RankingTask, TaskSource
from ranking.services.imports import ranking_task_content_hash
from ranking.services.tasks import ResponseSpec, ranking_task_build, ranking_tasks_save
from training.models import (
    DatasetSnapshot,
    ModelKind,
    ModelVersion,
    RunKind,
    RunTrigger,
    SamplingJob,
    SnapshotKind,
    TrainingRun,
)
from training.services.evaluations import evaluation_answers_ingest_for_run
from training.services.runs import run_trigger

INGEST_BATCH = 500


def sampling_job_start(
    *,
    project: Project,
    model: ModelVersion,
    num_prompts: int,
    responses_per_prompt: int | None = None,
    snapshot: DatasetSnapshot | None = None,
    config_overrides: dict | None = None,
    trigger: str = RunTrigger.MANUAL,
    created_by: AbstractBaseUser | None = None,
) -> SamplingJob:
    """Start a job: ``model`` answers ``num_prompts`` prompts K times (K: the project's answers per task).

    Prompts come from ``snapshot`` (a prompts snapshot) or else from the queue: active prompts this
    model has not answered yet, oldest first.
    """
    if model.project_id != project.pk:
        raise ApplicationError("model belongs to another project.")
    if model.kind == ModelKind.REWARD:
        raise ApplicationError("A reward model scores answers; it can't write them. Pick a policy, SFT or base model.")
    k = responses_per_prompt or project.responses_per_task
    if not MIN_RESPONSES <= k <= MAX_RESPONSES:
        raise ApplicationError(f"responses_per_prompt must be between {MIN_RESPONSES} and {MAX_RESPONSES}.")
    if num_prompts < 1:
        raise ApplicationError("num_prompts must be at least 1.")
    if snapshot is not None and snapshot.kind != SnapshotKind.PROMPTS:
        raise ApplicationError("snapshot must be a prompts snapshot.")
    config_overrides = dict(config_overrides or {})
    # each job draws its own answers (the seed is kept in the run's config, so a rerun draws the same)
    config_overrides.setdefault("seed", secrets.randbelow(2**31))
    with transaction.atomic():
        run = run_trigger(
            project=project, kind=RunKind.SAMPLE, input_model=model, snapshot=snapshot,
            snapshot_options={"limit": num_prompts, "not_sampled_by": model.pk},
            config_overrides=config_overrides, extra_wiring={"num_responses": k}, trigger=trigger,
            created_by=created_by,
        )
        return SamplingJob.objects.create(
            project=project, model=model, source=SamplingJob.Source.SNAPSHOT if snapshot else SamplingJob.Source.QUEUE,
            num_prompts=num_prompts, responses_per_prompt=k, run=run, trigger=trigger, created_by=created_by,
        )


def sampling_job_ingest_for_run(*, run: TrainingRun, folder: Path | None) -> SamplingJob | None:
    """Turn the run's samples into ranking tasks of the project, once. The caller holds the run's transaction.

    Answers that are empty or repeat another answer of the same prompt are dropped; a prompt left with
    fewer than two answers, or whose answers match a task already in the project, makes no task
    (counted in ``tasks_skipped``). A run that samples for an evaluation is handed to
    ``evaluation_answers_ingest_for_run`` (its answers become evaluation tasks).
    """
    if evaluation_answers_ingest_for_run(run=run, folder=folder):
        return None
    job = SamplingJob.objects.select_for_update().filter(run=run).first()
    if job is None or job.ingested_at is not None:
        return job
    samples = Path(folder or "") / run.config.get("output_file", "samples.jsonl")
    project = run.project
    prompts = {prompt.pk: prompt for prompt in Prompt.objects.filter(project=project, pk__in=_prompt_ids(samples))}
    created = skipped = 0
    batch: list = []
    seen_hashes: set[str] = set()
    for row in _rows(samples):
        answers = _distinct_answers(row.get("responses") or [])
        context = row.get("context") or []
        if len(answers) < MIN_RESPONSES:
            skipped += 1
            continue
        content_hash = ranking_task_content_hash(context=context, answers=[content for content, _ in answers])
        if content_hash in seen_hashes:
            skipped += 1
            continue
        seen_hashes.add(content_hash)
        # another model may give the very answers an earlier job gave: still a task of this job; the
        # job and the answers name it, so ingesting the same job twice finds it already there
        task_hash = hashlib.sha256(f"sampling-job:{job.pk}:{content_hash}".encode()).hexdigest()
        try:
            task, responses = ranking_task_build(
                project=project, context=context, source=TaskSource.SAMPLING, prompt=prompts.get(row.get("id")),
                responses=[ResponseSpec(content=content, generator=generator) for content, generator in answers],
            )
        except ValidationError:
            skipped += 1  # e.g. a context the ranking side refuses; the others still become tasks
            continue
        task.import_hash = task_hash
        batch.append((task, responses))
        if len(batch) >= INGEST_BATCH:
            created_now, skipped_now = _save(project, batch)
            created, skipped, batch = created + created_now, skipped + skipped_now, []
    created_now, skipped_now = _save(project, batch)
    job.tasks_created, job.tasks_skipped = created + created_now, skipped + skipped_now
    job.ingested_at = timezone.now()
    job.save(update_fields=["tasks_created", "tasks_skipped", "ingested_at"])
    return job


def _save(project: Project, batch: list) -> tuple[int, int]:
    if not batch:
        return 0, 0
    hashes = [task.import_hash for task, _ in batch]
    existing = set(
        RankingTask.objects.filter(project=project, import_hash__in=hashes).values_list("import_hash", flat=True)
    )
    fresh = [(task, responses) for task, responses in batch if task.import_hash not in existing]
    ranking_tasks_save(built=fresh)
    return len(fresh), len(batch) - len(fresh)


def _rows(path: Path):
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _prompt_ids(path: Path) -> list[int]:
    return [row["id"] for row in _rows(path) if isinstance(row.get("id"), int)]


def _distinct_answers(responses: list) -> list[tuple[str, str]]:
    answers, seen = [], set()
    for response in responses:
        content = (response.get("content") or "").replace("\x00", "").strip()
        if content and content not in seen:
            seen.add(content)
            answers.append((content, response.get("generator") or ""))
    return answers[:MAX_RESPONSES]
