"""The audit trail itself: an event names who did what to which object, and is never changed."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError, connection, transaction

from audit.models import AuditAction, AuditEvent, AuditEventImmutable
from audit.services import audit_record
from tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_an_event_keeps_actor_action_project_and_object_as_they_were():
    project, manager = ProjectFactory(name="Helpful"), UserFactory(username="mia")

    event = audit_record(actor=manager, action=AuditAction.EXPORT, project=project, obj=project,
                         details={"format": "sft.jsonl"})

    event.refresh_from_db()
    assert (event.actor_id, event.actor_name, event.action, event.project_id) == (
        manager.pk, "mia", "export", project.pk)
    assert (event.object_type, event.object_id, event.object_repr) == ("annotation.project", str(project.pk), "Helpful")
    assert event.details == {"format": "sft.jsonl"} and event.created_at is not None


def test_the_platform_acting_by_itself_has_no_actor():
    event = audit_record(actor=None, action=AuditAction.RUN_TRIGGER, project=ProjectFactory())
    assert event.actor_id is None and event.actor_name == ""
    assert audit_record(actor=AnonymousUser(), action=AuditAction.EXPORT, project=None).actor_id is None


def test_an_unknown_action_is_refused():
    with pytest.raises(ValueError):
        audit_record(actor=None, action="rename", project=None)


def test_the_model_refuses_to_change_or_delete_an_event():
    event = audit_record(actor=UserFactory(), action=AuditAction.IMPORT, project=ProjectFactory())
    event.details = {"rows": 0}
    with pytest.raises(AuditEventImmutable):
        event.save()
    with pytest.raises(AuditEventImmutable):
        event.delete()
    with pytest.raises(AuditEventImmutable):
        AuditEvent.objects.filter(pk=event.pk).update(details={})
    with pytest.raises(AuditEventImmutable):
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).details == {}


@pytest.mark.parametrize("statement", ["UPDATE audit_auditevent SET actor_name = 'someone else'",
                                       "DELETE FROM audit_auditevent"])
def test_the_database_refuses_to_change_or_delete_an_event_whoever_asks(statement):
    audit_record(actor=UserFactory(), action=AuditAction.IMPORT, project=ProjectFactory())
    with pytest.raises(DatabaseError, match="never changed"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert AuditEvent.objects.count() == 1


def test_deleting_the_user_or_the_project_leaves_the_history_as_it_was():
    project, user = ProjectFactory(), UserFactory(username="gone")
    event = audit_record(actor=user, action=AuditAction.ROLE_CHANGE, project=project, obj=project)
    ids = (user.pk, "gone", project.pk)

    user.delete()
    project.delete()

    event = AuditEvent.objects.get(pk=event.pk)
    assert (event.actor_id, event.actor_name, event.project_id) == ids
