"""The project's audit trail as a page (managers)."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render

from annotation.models import Role
from annotation.selectors.projects import project_get_for_user
from audit.models import AuditAction
from audit.selectors import audit_event_list

PAGE_SIZE = 50


@login_required
def project_audit(request, project_id: int):
    project = project_get_for_user(user=request.user, project_id=project_id, role=Role.MANAGER)
    action = request.GET.get("action") if request.GET.get("action") in AuditAction.values else None
    events = audit_event_list(project_id=project.pk, action=action)
    return render(request, "annotation/project_audit.html", {
        "project": project,
        "page": Paginator(events, PAGE_SIZE).get_page(request.GET.get("page")),
        "actions": AuditAction.choices,
        "action": action,
    })
