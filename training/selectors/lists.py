"""Runs, model versions, snapshots, sampling jobs, metric points, workers and the lineage, as the API and pages list them."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from annotation.models import Project
from training.models import (
    DatasetSnapshot,
    GpuWorker,
    LoopPolicy,
    MetricPoint,
    ModelVersion,
    Promotion,
    SamplingJob,
    TrainingRun,
)
from training.selectors.access import visible_to


def run_list(*, user, project: Project | None = None, kind: str | None = None, state: str | None = None) -> QuerySet:
    runs = visible_to(TrainingRun.objects.all(), user=user, project=project)
    if kind:
        runs = runs.filter(kind=kind)
    if state:
        runs = runs.filter(state=state)
    return runs.select_related(
        "project", "snapshot", "input_model", "reward_model", "output_model", "sampling_job", "created_by"
    ).order_by("-id")


def model_list(*, user, project: Project | None = None, kind: str | None = None) -> QuerySet:
    models = visible_to(ModelVersion.objects.all(), user=user, project=project)
    if kind:
        models = models.filter(kind=kind)
    return models.select_related("project", "parent", "run", "snapshot", "created_by").order_by("-id")


def snapshot_list(
    *, user, project: Project | None = None, kind: str | None = None, state: str | None = None
) -> QuerySet:
    snapshots = visible_to(DatasetSnapshot.objects.all(), user=user, project=project)
    if kind:
        snapshots = snapshots.filter(kind=kind)
    if state:
        snapshots = snapshots.filter(state=state)
    return snapshots.select_related("created_by").order_by("-id")


def sampling_job_list(*, user, project: Project | None = None, state: str | None = None) -> QuerySet:
    jobs = visible_to(SamplingJob.objects.all(), user=user, project=project)
    if state:
        jobs = jobs.filter(run__state=state)
    return jobs.select_related("run", "model", "created_by").order_by("-id")


def metric_points(*, run: TrainingRun, after_step: int | None = None, limit: int = 5000) -> list[dict]:
    points = MetricPoint.objects.filter(run=run).order_by("step")
    if after_step is not None:
        points = points.filter(step__gt=after_step)
    return [{"step": point.step, **point.values} for point in points[:limit]]


def metric_point_latest(*, run: TrainingRun) -> dict | None:
    """Return the run's newest logged point as ``{"step", ...figures}``, or None before the first."""
    point = MetricPoint.objects.filter(run=run).order_by("-step").first()
    return {"step": point.step, **point.values} if point else None


def current_model_ids(*, project_ids) -> tuple[set[int], set[int]]:
    """Return the ids of the current policies and of the current reward models of these projects."""
    rows = LoopPolicy.objects.filter(project_id__in=project_ids).values_list("current_policy_id", "current_reward_model_id")
    return {policy for policy, _ in rows if policy}, {reward for _, reward in rows if reward}


def model_promotions(*, model: ModelVersion) -> QuerySet[Promotion]:
    return model.promotions.select_related("promoted_by", "previous").order_by("-id")


def workers_list() -> QuerySet[GpuWorker]:
    return GpuWorker.objects.select_related("current_run").order_by("hostname")


def worker_is_alive(worker: GpuWorker) -> bool:
    return worker.last_heartbeat >= timezone.now() - timedelta(seconds=settings.RLHF_RUN_STALE_AFTER_SECONDS)


def model_lineage(*, project: Project) -> list[dict]:
    """Return the project's model versions as a forest: each with its children, sampled tasks and promotions."""
    models = list(
        ModelVersion.objects.filter(project=project).select_related("run", "snapshot").order_by("id")
    )
    jobs: dict[int, list[SamplingJob]] = {}
    for job in SamplingJob.objects.filter(project=project).select_related("run").order_by("id"):
        jobs.setdefault(job.model_id, []).append(job)
    policy = LoopPolicy.objects.filter(project=project).first()
    nodes = {
        model.pk: {"model": model, "children": [], "sampling_jobs": jobs.get(model.pk, []),
                   "is_current_policy": bool(policy and policy.current_policy_id == model.pk),
                   "is_current_reward": bool(policy and policy.current_reward_model_id == model.pk)}
        for model in models
    }
    roots = []
    for model in models:
        if model.parent_id in nodes:
            nodes[model.parent_id]["children"].append(nodes[model.pk])
        else:
            roots.append(nodes[model.pk])
    return roots


