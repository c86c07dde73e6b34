"""Write the audit trail. The services that export, import, change roles, promote models and drive runs
call ``audit_record`` inside their own transaction, so an event commits (or rolls back) with its change."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import models

from audit.models import AuditAction, AuditEvent


def audit_record(
    *,
    actor: AbstractBaseUser | None,
    action: str,
    project: models.Model | None,
    obj: models.Model | None = None,
    details: dict | None = None,
) -> AuditEvent:
    """Record that ``actor`` (None: the platform itself) did ``action`` on ``obj`` in ``project``."""
    if action not in AuditAction.values:
        raise ValueError(f"Unknown audit action {action!r}")
    if actor is not None and not actor.is_authenticated:
        actor = None
    return AuditEvent.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor is not None else "",
        action=action,
        project=project,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None and obj.pk is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        details=details or {},
    )
