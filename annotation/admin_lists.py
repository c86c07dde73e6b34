"""Admin change lists that stay fast on tables of millions of rows (ranking tasks, answers, prompts…).

Django's change list counts the whole table twice per view (the result count and the "N total"
beside it) and ``RelatedOnlyFieldListFilter`` reads ``SELECT DISTINCT project_id`` over every row
to offer its choices. ``BigTableAdminMixin`` pages with an estimated count past 20,000 rows and drops
the second count; ``project_filter`` and ``member_filter`` offer their choices from the small
tables (projects, memberships) instead.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model

from annotation.admin_scoping import managed_project_ids
from annotation.models import Membership, Project
from config.counting import EstimatedCountPaginator


class BigTableAdminMixin:
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50  # rendering a row costs Django's admin a few milliseconds: a page stays well under 300 ms


def _projects_of(request):
    if request.user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(pk__in=managed_project_ids(request.user))


def project_filter(path: str = "project") -> type[admin.SimpleListFilter]:
    """A "By project" filter over the projects the user manages; ``path`` leads from the model to its project."""

    class ProjectFilter(admin.SimpleListFilter):
        title = "project"
        parameter_name = f"{path}__id__exact"

        def lookups(self, request, model_admin):
            return [(project.pk, project.name) for project in _projects_of(request).order_by("name")]

        def queryset(self, request, queryset):
            value = self.value()
            if value and str(value).isdigit():  # facet counts pass the lookup value as an int
                return queryset.filter(**{f"{path}_id": int(value)})
            return queryset

    return ProjectFilter


def member_filter(field: str, *, title: str) -> type[admin.SimpleListFilter]:
    """A filter on a user field, offering the members of the projects the user manages."""

    class MemberFilter(admin.SimpleListFilter):
        parameter_name = f"{field}__id__exact"

        def lookups(self, request, model_admin):
            members = Membership.objects.filter(project__in=_projects_of(request)).values("user_id")
            users = get_user_model().objects.filter(pk__in=members).order_by("username")
            return [(user.pk, user.get_username()) for user in users]

        def queryset(self, request, queryset):
            value = self.value()
            if value and str(value).isdigit():  # facet counts pass the lookup value as an int
                return queryset.filter(**{f"{field}_id": int(value)})
            return queryset

    MemberFilter.title = title
    return MemberFilter
