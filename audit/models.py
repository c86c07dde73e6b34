"""The audit trail: who exported, imported, changed a role, promoted a model or drove a run, and when.

An event is written once, in the transaction of the change it records, and never changed or deleted:
``save`` of a stored event, ``delete`` and the queryset's ``update``/``delete`` raise, and on
PostgreSQL a trigger refuses UPDATE and DELETE of the table whoever sends them. The actor and the
project are kept as plain ids (no database constraint, nothing cascades): deleting a user or a
project leaves its history as it was, with the actor's username as it was then.
"""

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class AuditEventImmutable(Exception):
    """Something tried to change or delete an audit event."""


class AuditAction(models.TextChoices):
    EXPORT = "export", "exported data"
    IMPORT = "import", "imported data"
    MEMBER_ADD = "member_add", "added a member"
    ROLE_CHANGE = "role_change", "changed a role"
    MEMBER_REMOVE = "member_remove", "removed a member"
    MODEL_PROMOTE = "model_promote", "promoted a model"
    RUN_TRIGGER = "run_trigger", "triggered a run"
    RUN_CANCEL = "run_cancel", "cancelled a run"
    RUN_RESUME = "run_resume", "resumed a run"


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditEventImmutable("Audit events are never changed.")

    def delete(self):
        raise AuditEventImmutable("Audit events are never deleted.")


class AuditEvent(models.Model):
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
        related_name="+", help_text="Empty for what the platform did by itself (the loop, a worker).",
    )
    actor_name = models.CharField(max_length=150, blank=True, help_text="The actor's username at the time.")
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    project = models.ForeignKey(
        "annotation.Project", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
        related_name="+",
    )
    object_type = models.CharField(max_length=100, blank=True, help_text='The object\'s model, "training.trainingrun".')
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True, help_text="How the object read at the time.")
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        default_permissions = ("view",)  # nobody may be given add, change or delete
        indexes = [models.Index(fields=["project", "-created_at", "-id"], name="audit_project_newest_idx")]

    def __str__(self) -> str:
        who = self.actor_name or "the platform"
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {who} {self.get_action_display()} {self.object_repr}".strip()

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditEventImmutable("Audit events are never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditEventImmutable("Audit events are never deleted.")
