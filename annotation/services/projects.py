"""Writes for projects, memberships and guidelines."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max

from annotation.models import Guideline, Membership, Project, Role

User = get_user_model()


def project_create(*, name: str, slug: str, description: str = "", **settings) -> Project:
    project = Project(name=name, slug=slug, description=description, **settings)
    project.full_clean()
    project.save()
    return project


def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    """Give ``user`` ``role`` in ``project``, creating the membership or changing its role."""
    if role not in Role.values:
        raise ValueError(f"Unknown role {role!r}; expected one of {', '.join(Role.values)}")
    membership, created = Membership.objects.get_or_create(project=project, user=user, defaults={"role": role})
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


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
