"""Read the audit trail."""

from django.db.models import QuerySet

from audit.models import AuditEvent


def audit_event_list(*, project_id: int, action: str | None = None) -> QuerySet[AuditEvent]:
    """The project's events, newest first (``action`` keeps one kind)."""
    events = AuditEvent.objects.filter(project_id=project_id)
    if action:
        events = events.filter(action=action)
    return events.order_by("-created_at", "-id")
