"""Server-rendered ranking pages: rank answers, my stats, quality (managers), import (managers)."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from annotation.models import Role
from annotation.selectors import membership_get, project_get_for_user, user_has_role
from config.exceptions import ApplicationError
from ranking.models import SCORE_MAX, SCORE_MIN, Flag, ImportJobState, RankingImportJob, TaskPurpose
from ranking.selectors import (
    labeler_stats,
    project_ranking_quality,
    ranking_task_counts,
    responses_in_shown_order,
)
from ranking.services.import_jobs import ranking_import_job_get_for_manager, ranking_import_job_start
from ranking.services.imports import FORMATS, ranking_tasks_import
from ranking.services.leasing import ranking_task_lease_next


@login_required
@ensure_csrf_cookie
def rank_next(request, project_id: int):
    """Lease my next task (the same one while my lease lives) and show it; say so when none is left."""
    project = project_get_for_user(user=request.user, project_id=project_id)
    lease = ranking_task_lease_next(project=project, labeler=request.user)
    context = {"project": project, "membership": membership_get(user=request.user, project=project)}
    if lease is None:
        context["stats"] = labeler_stats(project=project, labeler=request.user)
        return render(request, "ranking/rank_none.html", context)
    task = lease.task
    responses = responses_in_shown_order(task=task, labeler=request.user)
    if task.purpose == TaskPurpose.EVALUATION:
        return _judge(request, context, task=task, lease=lease, responses=responses)
    context.update(
        task=task,
        lease=lease,
        responses=responses,
        flags=Flag.choices,
        scores=range(SCORE_MIN, SCORE_MAX + 1),
        guideline=project.current_guideline,
        app_config={
            "taskId": task.pk,
            "responses": [{"id": r.pk, "label": index} for index, r in enumerate(responses, start=1)],
            "submitUrl": reverse("api-ranking-submit", args=[task.pk]),
            "skipUrl": reverse("api-ranking-task-skip", args=[task.pk]),
            "nextUrl": reverse("ranking-rank", args=[project.pk]),
        },
    )
    return render(request, "ranking/rank.html", context)


def _judge(request, context: dict, *, task, lease, responses):
    """An evaluation task: the answers side by side, shuffled and unnamed; pick the better one or call a tie."""
    context.update(
        task=task,
        lease=lease,
        responses=responses,
        guideline=context["project"].current_guideline,
        app_config={
            "taskId": task.pk,
            "responses": [{"id": r.pk, "label": index} for index, r in enumerate(responses, start=1)],
            "submitUrl": reverse("api-ranking-submit", args=[task.pk]),
            "skipUrl": reverse("api-ranking-task-skip", args=[task.pk]),
            "nextUrl": reverse("ranking-rank", args=[context["project"].pk]),
        },
    )
    return render(request, "ranking/judge.html", context)


@login_required
def my_stats(request, project_id: int):
    project = project_get_for_user(user=request.user, project_id=project_id)
    return render(
        request,
        "ranking/stats.html",
        {"project": project, "stats": labeler_stats(project=project, labeler=request.user)},
    )


@login_required
def quality(request, project_id: int):
    project = project_get_for_user(user=request.user, project_id=project_id)
    if not user_has_role(user=request.user, project=project, role=Role.MANAGER):
        raise Http404("No such project.")
    return render(
        request,
        "ranking/quality.html",
        {"project": project, "quality": project_ranking_quality(project=project)},
    )


@login_required
def import_tasks(request, project_id: int):
    """Import a ranking-task file: a small one in the request, a larger one on the worker (a job page with progress)."""
    project = project_get_for_user(user=request.user, project_id=project_id)
    if not user_has_role(user=request.user, project=project, role=Role.MANAGER):
        raise Http404("No such project.")
    errors: list[str] = []
    if request.method == "POST":
        upload = request.FILES.get("file")
        file_format = request.POST.get("format", "")
        skip_invalid = request.POST.get("skip_invalid") == "on"
        if upload is None:
            errors = ["Choose a JSONL file to import."]
        elif upload.size > settings.IMPORT_INLINE_MAX_BYTES:
            try:
                job = ranking_import_job_start(project=project, user=request.user, upload=upload, format=file_format,
                                               skip_invalid=skip_invalid)
            except ApplicationError as error:
                errors = [error.message]
            else:
                return redirect("ranking-import-job", project_id=project.pk, job_id=job.pk)
        else:
            try:
                report = ranking_tasks_import(
                    project=project, file=upload, format=file_format, created_by=request.user, size=upload.size,
                    skip_invalid=skip_invalid,
                )
            except ApplicationError as error:
                errors = error.extra.get("errors") or [error.message]
            else:
                messages.success(request, _import_summary(
                    tasks=report.tasks_created, rankings=report.rankings_imported, skipped=len(report.skipped_lines),
                    duplicates=len(report.duplicate_lines), invalid=len(report.invalid_lines),
                ))
                return redirect("project-detail", project_id=project.pk)
    return render(
        request,
        "ranking/import.html",
        {
            "project": project, "formats": FORMATS, "errors": errors, "counts": ranking_task_counts(project=project),
            "jobs": RankingImportJob.objects.filter(project=project).order_by("-created_at", "-id")[:5],
            "inline_max_bytes": settings.IMPORT_INLINE_MAX_BYTES,
        },
        status=400 if errors else 200,
    )


def _import_summary(*, tasks: int, rankings: int, skipped: int, duplicates: int, invalid: int) -> str:
    summary = f"Imported {tasks} ranking task(s) with {rankings} imported ranking(s)"
    if skipped:
        summary += f", {skipped} line(s) skipped"
    if duplicates:
        summary += f", {duplicates} duplicate task(s) skipped"
    if invalid:
        summary += f", {invalid} invalid line(s) skipped"
    return summary + "."


@login_required
def import_job(request, project_id: int, job_id: int):
    """An import running on the worker: a progress bar that polls the job's API until it is done or refused."""
    job = ranking_import_job_get_for_manager(user=request.user, job_id=job_id)
    if job.project_id != project_id:
        raise Http404("No such import.")
    summary = ""
    if job.state == ImportJobState.DONE:
        summary = _import_summary(
            tasks=job.tasks_created, rankings=job.rankings_imported,
            skipped=(job.report.get("skipped_lines") or {}).get("count", 0), duplicates=job.duplicates_count,
            invalid=job.invalid_count,
        )
    return render(request, "ranking/import_job.html", {"project": job.project, "job": job, "summary": summary})
