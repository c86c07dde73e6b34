"""Pages for demonstrations: start writing, the editor, My work, the review queue, import / export."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from annotation.models import (
    TURN_MAX_CHARS,
    TURNS_MAX,
    DialogueStatus,
    ProjectImportJob,
    ReviewDecision,
    Role,
    TurnRole,
)
from annotation.selectors.dialogues import (
    dialogue_get_for_user,
    dialogue_get_own,
    dialogue_list_for_author,
    dialogue_review_queue,
    project_demonstration_figures,
    review_current_round,
    review_latest_rejection,
)
from annotation.selectors.projects import (
    membership_get,
    project_get_for_user,
    project_list_for_user,
    user_has_role,
    user_manages_project_data,
)
from annotation.services.dialogues import (
    TurnData,
    dialogue_create,
    dialogue_discard,
    dialogue_review,
    prompt_lease_next,
)
from annotation.services.import_jobs import project_import_job_get_for_manager, project_import_job_start
from annotation.services.imports import FORMATS, ImportLineError, project_import
from config.exceptions import ApplicationError
from config.ids import parse_object_id

PAGE_SIZE = 50


def _page(request, queryset):
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def _int_or_none(raw: str | None) -> int | None:
    return parse_object_id(raw) if raw else None


@login_required
def my_work(request):
    status = request.GET.get("status") or None
    status = status if status in DialogueStatus.values else None
    project_id = _int_or_none(request.GET.get("project"))
    all_mine = dialogue_list_for_author(user=request.user, project_id=project_id)
    counts = {value: 0 for value in DialogueStatus.values}
    counts.update(all_mine.order_by().values_list("status").annotate(n=Count("id")))
    rows = _page(request, all_mine.filter(status=status) if status else all_mine)
    for dialogue in rows:
        dialogue.rejection = review_latest_rejection(dialogue=dialogue)
    return render(
        request,
        "annotation/my_work.html",
        {
            "rows": rows,
            "status": status,
            "project_id": project_id,
            "tabs": [(value, label, counts[value]) for value, label in DialogueStatus.choices],
            "total": sum(counts.values()),
            "projects": project_list_for_user(user=request.user),
            "editable": DialogueStatus.editable(),
        },
    )


@login_required
def review_queue(request):
    project_id = _int_or_none(request.GET.get("project"))
    queue = dialogue_review_queue(user=request.user, project_id=project_id)
    rows = _page(request, queue)
    reviewer_projects = [
        p
        for p in project_list_for_user(user=request.user)
        if user_has_role(user=request.user, project=p, role=Role.REVIEWER)
    ]
    return render(
        request,
        "annotation/review_queue.html",
        {"rows": rows, "project_id": project_id, "reviewer_projects": reviewer_projects},
    )


@login_required
def demonstration_start(request, project_id: int):
    project = project_get_for_user(user=request.user, project_id=project_id)
    open_work = dialogue_list_for_author(user=request.user, project_id=project.pk).filter(
        status__in=DialogueStatus.editable()
    )
    return render(
        request,
        "annotation/demonstration_start.html",
        {
            "project": project,
            "membership": membership_get(user=request.user, project=project),
            "figures": project_demonstration_figures(project=project),
            "open_work": open_work[:20],
            "guideline": project.current_guideline,
        },
    )


@login_required
@require_POST
def demonstration_next(request, project_id: int):
    project = project_get_for_user(user=request.user, project_id=project_id)
    try:
        result = prompt_lease_next(project=project, user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("demonstration-start", project_id=project.pk)
    if result is None:
        messages.info(
            request, "Every prompt of the queue has its demonstrations. Start a blank conversation instead."
        )
        return redirect("demonstration-start", project_id=project.pk)
    if not result.created:
        messages.info(request, "You already hold a prompt of this queue: finish it first.")
    return redirect("dialogue-edit", dialogue_id=result.dialogue.pk)


@login_required
@require_POST
def demonstration_new(request, project_id: int):
    project = project_get_for_user(user=request.user, project_id=project_id)
    try:
        dialogue = dialogue_create(
            project=project,
            author=request.user,
            turns=[TurnData(role=TurnRole.USER, content=""), TurnData(role=TurnRole.ASSISTANT, content="")],
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("demonstration-start", project_id=project.pk)
    return redirect("dialogue-edit", dialogue_id=dialogue.pk)


@never_cache  # Back after submitting must ask again (and land on the read-only page), not show a stale draft
@login_required
def dialogue_edit(request, dialogue_id: int):
    dialogue = dialogue_get_own(user=request.user, dialogue_id=dialogue_id)
    if dialogue.status not in DialogueStatus.editable():
        return redirect("dialogue-detail", dialogue_id=dialogue.pk)
    rejection = review_latest_rejection(dialogue=dialogue)
    editor_data = {
        "id": dialogue.pk,
        "version": dialogue.version,
        "status": dialogue.status,
        "turns": [{"role": t.role, "content": t.content} for t in dialogue.turns.all()],
        "prompt": dialogue.prompt.text if dialogue.prompt else None,
        "lease_expires_at": dialogue.lease_expires_at.isoformat() if dialogue.lease_expires_at else None,
        "limits": {"turn_max_chars": TURN_MAX_CHARS, "turns_max": TURNS_MAX},
        "urls": {
            "dialogue": reverse("api-dialogue-detail", args=[dialogue.pk]),
            "submit": reverse("api-dialogue-submit", args=[dialogue.pk]),
            "preview": reverse("api-markdown-preview"),
            "after_submit": reverse("my-work") + "?status=submitted",
            "detail": reverse("dialogue-detail", args=[dialogue.pk]),
        },
        "csrf_token": get_token(request),
    }
    return render(
        request,
        "annotation/dialogue_editor.html",
        {
            "dialogue": dialogue,
            "project": dialogue.project,
            "guideline": dialogue.project.current_guideline,
            "rejection": rejection if dialogue.status != DialogueStatus.DRAFT else None,
            "editor_data": editor_data,
        },
    )


def _can_review(*, user, dialogue) -> bool:
    return (
        dialogue.status == DialogueStatus.SUBMITTED
        and dialogue.author_id != user.pk
        and user_has_role(user=user, project=dialogue.project, role=Role.REVIEWER)
        and not any(r.reviewer_id == user.pk for r in review_current_round(dialogue=dialogue))
    )


@login_required
def dialogue_detail(request, dialogue_id: int):
    dialogue = dialogue_get_for_user(user=request.user, dialogue_id=dialogue_id)
    return render(
        request,
        "annotation/dialogue_detail.html",
        {
            "dialogue": dialogue,
            "project": dialogue.project,
            "reviews": sorted(dialogue.reviews.all(), key=lambda r: (r.round, r.created_at)),
            "can_review": _can_review(user=request.user, dialogue=dialogue),
            "is_author": dialogue.author_id == request.user.pk,
            "editable": dialogue.status in DialogueStatus.editable(),
            "accepts_current": sum(
                r.decision == ReviewDecision.ACCEPT for r in review_current_round(dialogue=dialogue)
            ),
            "guideline": dialogue.project.current_guideline,
        },
    )


@login_required
@require_POST
def dialogue_review_submit(request, dialogue_id: int):
    dialogue = dialogue_get_for_user(user=request.user, dialogue_id=dialogue_id)
    decision = request.POST.get("decision", "")
    try:
        dialogue_review(
            dialogue=dialogue,
            reviewer=request.user,
            decision=decision,
            comment=request.POST.get("comment", ""),
        )
    except ApplicationError as exc:
        messages.error(request, exc.message, extra_tags="review-form")  # shown beside the comment field
        return redirect("dialogue-detail", dialogue_id=dialogue.pk)
    messages.success(
        request, f"Dialogue {dialogue.pk}: {'accepted' if decision == 'accept' else 'rejected'}."
    )
    following = dialogue_review_queue(user=request.user, project_id=dialogue.project_id).first()
    if following is not None:
        return redirect("dialogue-detail", dialogue_id=following.pk)
    return redirect(reverse("review-queue") + f"?project={dialogue.project_id}")


@login_required
@require_POST
def dialogue_discard_view(request, dialogue_id: int):
    dialogue = dialogue_get_own(user=request.user, dialogue_id=dialogue_id)
    try:
        dialogue_discard(dialogue=dialogue, author=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("dialogue-detail", dialogue_id=dialogue.pk)
    messages.success(request, "Draft discarded.")
    return redirect("my-work")


@login_required
def project_data(request, project_id: int):
    """Managers import prompts or demonstrations and download exports."""
    project = project_get_for_user(user=request.user, project_id=project_id)
    is_manager = user_has_role(user=request.user, project=project, role=Role.MANAGER)
    can_export = user_manages_project_data(user=request.user, project=project)
    if not (is_manager or can_export):
        raise Http404("No such project.")
    report, error, status_code = None, None, 200
    if request.method == "POST":
        if not is_manager:
            raise Http404("No such project.")
        upload, fmt = request.FILES.get("file"), request.POST.get("format", "")
        options = {
            "format": fmt,
            "skip_invalid": request.POST.get("skip_invalid") == "on",
            "dialogue_status": request.POST.get("dialogue_status") or DialogueStatus.ACCEPTED,
        }
        if upload is None:
            error, status_code = "Choose a file to import.", 400
        elif upload.size > settings.IMPORT_INLINE_MAX_BYTES:  # too long for a request: the worker imports it
            try:
                job = project_import_job_start(project=project, user=request.user, upload=upload, **options)
            except ApplicationError as exc:
                error, status_code = exc.message, exc.status_code
            else:
                return redirect("project-import-job", project_id=project.pk, job_id=job.pk)
        else:
            try:
                report = project_import(project=project, user=request.user, file=upload, **options).as_dict()
            except ImportLineError as exc:
                error, status_code = exc.message, 400
            except ApplicationError as exc:
                error, status_code = exc.message, exc.status_code
    return render(
        request,
        "annotation/project_data.html",
        {
            "project": project,
            "is_manager": is_manager,
            "can_export": can_export,
            "formats": FORMATS,
            "report": report,
            "error": error,
            "figures": project_demonstration_figures(project=project),
            "jobs": ProjectImportJob.objects.filter(project=project).order_by("-created_at", "-id")[:5]
            if is_manager else [],
            "inline_max_bytes": settings.IMPORT_INLINE_MAX_BYTES,
        },
        status=status_code,
    )


@login_required
def project_import_job(request, project_id: int, job_id: int):
    """An import running on the worker: a progress bar that polls the job's API until it is done or refused."""
    job = project_import_job_get_for_manager(user=request.user, job_id=job_id)
    if job.project_id != project_id:
        raise Http404("No such import.")
    return render(request, "annotation/import_job.html", {"project": job.project, "job": job})
