"""Who may see the training side of a project: its managers and the ML engineers who belong to it; others get 404."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.http import Http404

from annotation.models import Project
from annotation.selectors import user_manages_project_data
from config.ids import parse_object_id
from training.models import (
    DatasetSnapshot,
    ModelVersion,
    SamplingJob,
    TrainingRun,
)


def projects_for_training(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Return the projects whose training side ``user`` may see and drive."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.has_perm("annotation.use_training_api"):
        return Project.objects.filter(memberships__user=user).distinct()
    return Project.objects.filter(memberships__user=user, memberships__role="manager").distinct()


def training_project_get(*, user: AbstractBaseUser, project_id) -> Project:
    project = Project.objects.filter(pk=parse_object_id(project_id)).first()
    if project is None or not user_manages_project_data(user=user, project=project):
        raise Http404("No such project.")
    return project


def object_get_for_user(queryset: QuerySet, *, user: AbstractBaseUser, object_id, what: str):
    obj = queryset.filter(pk=parse_object_id(object_id)).select_related("project").first()
    if obj is None or not user_manages_project_data(user=user, project=obj.project):
        raise Http404(f"No such {what}.")
    return obj


def run_get_for_user(*, user, run_id) -> TrainingRun:
    return object_get_for_user(
        TrainingRun.objects.select_related(
            "snapshot", "input_model", "reward_model", "output_model", "sampling_job", "created_by"
        ),
        user=user,
        object_id=run_id, what="run",
    )


def model_get_for_user(*, user, model_id) -> ModelVersion:
    return object_get_for_user(
        ModelVersion.objects.select_related("parent", "run", "snapshot", "created_by"), user=user, object_id=model_id,
        what="model",
    )


def snapshot_get_for_user(*, user, snapshot_id) -> DatasetSnapshot:
    return object_get_for_user(
        DatasetSnapshot.objects.select_related("created_by"), user=user, object_id=snapshot_id, what="snapshot"
    )


def sampling_job_get_for_user(*, user, job_id) -> SamplingJob:
    return object_get_for_user(
        SamplingJob.objects.select_related("run", "model", "created_by"), user=user, object_id=job_id,
        what="sampling job",
    )


def visible_to(queryset: QuerySet, *, user, project: Project | None) -> QuerySet:
    if project is not None:
        return queryset.filter(project=project)
    return queryset.filter(project__in=projects_for_training(user=user))


