"""Writes for projects, memberships and guidelines."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max

from annotation.models import Guideline, Membership, Project, Role
from annotation.selectors.projects import membership_read_forget
from audit.models import AuditAction
from audit.services import audit_record

User = get_user_model()


def project_create(*, name: str, slug: str, description: str = "", **settings) -> Project:
    project = Project(name=name, slug=slug, description=description, **settings)
    project.full_clean()
    project.save()
    return project


@transaction.atomic
def membership_set(
    *, project: Project, user: AbstractBaseUser, role: str, changed_by: AbstractBaseUser | None = None
) -> Membership:
    """Give ``user`` ``role`` in ``project``, creating the membership or changing its role (audited)."""
    if role not in Role.values:
        raise ValueError(f"Unknown role {role!r}; expected one of {', '.join(Role.values)}")
    membership_read_forget(project=project)
    membership, created = Membership.objects.get_or_create(project=project, user=user, defaults={"role": role})
    if created:
        _membership_audit(membership=membership, previous_role=None, actor=changed_by)
    elif membership.role != role:
        previous_role, membership.role = membership.role, role
        membership.save(update_fields=["role"])
        _membership_audit(membership=membership, previous_role=previous_role, actor=changed_by)
    return membership


@transaction.atomic
def membership_save(*, membership: Membership, changed_by: AbstractBaseUser | None) -> Membership:
    """Save a membership edited in a form (admin), recording a new member or a changed role."""
    before = Membership.objects.filter(pk=membership.pk).values("user_id", "role").first() if membership.pk else None
    membership.save()
    membership_read_forget(project=membership.project)
    if before is None or before["user_id"] != membership.user_id:
        _membership_audit(membership=membership, previous_role=None, actor=changed_by)
    elif before["role"] != membership.role:
        _membership_audit(membership=membership, previous_role=before["role"], actor=changed_by)
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, removed_by: AbstractBaseUser | None) -> None:
    """Take a member out of a project, recording who did it."""
    audit_record(actor=removed_by, action=AuditAction.MEMBER_REMOVE, project=membership.project, obj=membership,
                 details={"user": membership.user.get_username(), "role": membership.role})
    membership_read_forget(project=membership.project)
    membership.delete()


def _membership_audit(*, membership: Membership, previous_role: str | None, actor: AbstractBaseUser | None) -> None:
    if previous_role is None:
        action, details = AuditAction.MEMBER_ADD, {}
    else:
        action, details = AuditAction.ROLE_CHANGE, {"previous_role": previous_role}
    audit_record(actor=actor, action=action, project=membership.project, obj=membership,
                 details={"user": membership.user.get_username(), "role": membership.role, **details})


@transaction.atomic
def guideline_publish(*, project: Project, body: str, title: str = "Guidelines", author=None) -> Guideline:
    """Publish a new version of the project's guidelines; older versions stay for the record."""
    # lock the project row so two managers publishing at once get distinct versions
    Project.objects.select_for_update().get(pk=project.pk)
    latest = project.guidelines.aggregate(v=Max("version"))["v"] or 0
    guideline = Guideline(project=project, version=latest + 1, title=title, body=body, created_by=author)
    guideline.full_clean()
    guideline.save()
    return guideline
