"""Reads: which projects a user may see, and in which role."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import OuterRef, Prefetch, QuerySet, Subquery
from django.http import Http404

from annotation.models import Guideline, Membership, Project, Role
from config.ids import parse_object_id


def project_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Return the projects ``user`` belongs to (any role), newest membership data included."""
    if not user.is_authenticated:
        return Project.objects.none()
    return Project.objects.filter(memberships__user=user).distinct()


def project_list_for_user_detailed(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Return the user's projects with ``my_role`` and ``guidelines_newest_first`` read in a fixed number of queries."""
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    return project_list_for_user(user=user).annotate(my_role=Subquery(role)).prefetch_related(
        Prefetch("guidelines", queryset=Guideline.objects.order_by("-version"), to_attr="guidelines_newest_first")
    )


def membership_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Membership]:
    """Return the user's memberships with their projects, in project-name order."""
    return Membership.objects.filter(user=user).select_related("project").order_by("project__name")


# project_get_for_user keeps the membership it read on the project it returns, so the checks that
# follow in the same request (membership_get, user_has_role, user_sees_task_internals…) don't read it
# again; services that change a membership drop it (membership_read_forget)
_MEMBERSHIP_READ = "_membership_read"


def membership_get(*, user: AbstractBaseUser, project: Project) -> Membership | None:
    if not user.is_authenticated:
        return None
    known = getattr(project, _MEMBERSHIP_READ, None)
    if known is not None and known.user_id == user.pk:
        return known
    # no ordering: the model's ("project", "user__username") would join both tables to sort one row
    return Membership.objects.filter(user=user, project=project).order_by().first()


def membership_read_forget(*, project: Project) -> None:
    """Forget the membership ``project_get_for_user`` kept on ``project`` (its role just changed)."""
    project.__dict__.pop(_MEMBERSHIP_READ, None)


def project_get_for_user(*, user: AbstractBaseUser, project_id: int | str, role: str = Role.LABELER) -> Project:
    """Return the project if ``user`` holds at least ``role`` in it; otherwise raise 404.

    A project the user can't see answers the same as one that doesn't exist, so ids leak nothing.
    A member whose role is too low gets 404 too for the same reason. One query: the membership with
    its project.
    """
    if not user.is_authenticated:
        raise Http404("No such project.")
    membership = (
        Membership.objects.filter(user=user, project_id=parse_object_id(project_id))
        .select_related("project")
        .order_by()
        .first()
    )
    if membership is None or not membership.has_role(role):
        raise Http404("No such project.")
    project = membership.project
    setattr(project, _MEMBERSHIP_READ, membership)
    return project


def user_has_role(*, user: AbstractBaseUser, project: Project, role: str) -> bool:
    membership = membership_get(user=user, project=project)
    return membership is not None and membership.has_role(role)


def project_members(*, project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("user__username")


def user_manages_project_data(*, user: AbstractBaseUser, project: Project) -> bool:
    """Managers of the project, and ML engineers who belong to it: export data, create ranking tasks."""
    membership = membership_get(user=user, project=project)
    if membership is None:
        return False
    return membership.has_role(Role.MANAGER) or user_can_use_training_api(user=user)


def user_can_use_training_api(*, user: AbstractBaseUser) -> bool:
    return bool(user.is_authenticated and user.has_perm("annotation.use_training_api"))
