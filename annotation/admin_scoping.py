"""Keep Django admin inside the projects a staff user manages.

Every ModelAdmin and inline of annotation, ranking and training uses ``ManagedProjectsAdminMixin``
(tests/annotation/test_admin_scoping.py checks that each registered one does). For a staff user who
is not a superuser it limits

- the rows listed and opened (``get_queryset``),
- every foreign-key and many-to-many choice (select, raw id, autocomplete), so a POST naming another
  project's row is "not a valid choice" rather than a row written into that project,
- the ``?field=<id>`` initial values of an add page, and the label a raw-id widget prints beside an
  id (Django looks it up unfiltered, so it named any row: another project's prompt text, its task),
- and every save: the object must belong to a managed project once the form has changed it.

Users are not a project's rows: choices of a user are the members of the managed projects, except
the fields in ``any_user_fields`` (adding a member means picking someone not yet in the project).
"""

from __future__ import annotations

from functools import cache

from django.apps import apps
from django.contrib import admin
from django.contrib.admin import widgets
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db import models

from annotation.models import Membership, Project, Role


@cache
def project_path(model: type[models.Model]) -> str | None:
    """Return the lookup from ``model`` to its project ("" for Project, None for rows of no project).

    Follows the model's own ``project`` foreign key, else a non-null foreign key to a row that has one
    (a ranking's task, a review's dialogue, a metric point's run), at most three hops away.
    """
    return _project_path(model, hops_left=3)


def _project_path(model, *, hops_left: int) -> str | None:
    if model is Project:
        return ""
    forward = [field for field in model._meta.concrete_fields if field.many_to_one or field.one_to_one]
    for field in forward:
        if field.related_model is Project:
            return field.name
    if hops_left > 1:
        for field in forward:
            if field.null:
                continue
            beyond = _project_path(field.related_model, hops_left=hops_left - 1)
            if beyond is not None:
                return f"{field.name}__{beyond}" if beyond else field.name
    return None


def managed_project_ids(user) -> models.QuerySet:
    """The ids of the projects ``user`` manages, as a subquery."""
    return Membership.objects.filter(user=user, role=Role.MANAGER).values("project_id")


def project_id_of(obj: models.Model, path: str) -> int | None:
    """Follow ``path`` (from ``project_path``) on an instance and return its project's id."""
    if path == "":
        return obj.pk
    *hops, last = path.split("__")
    for hop in hops:
        obj = getattr(obj, hop, None)
        if obj is None:
            return None
    return getattr(obj, f"{last}_id", None)


class ScopedForeignKeyRawIdWidget(widgets.ForeignKeyRawIdWidget):
    """A raw-id input that names the row beside the id only when the user may choose it."""

    def __init__(self, rel, admin_site, *, queryset, **kwargs):
        super().__init__(rel, admin_site, **kwargs)
        self.queryset = queryset

    def label_and_url_for_value(self, value):
        key = self.rel.get_related_field().name
        try:
            allowed = self.queryset.filter(**{key: value}).exists()
        except (ValueError, TypeError):
            allowed = False
        return super().label_and_url_for_value(value) if allowed else ("", "")


class ManagedProjectsAdminMixin:
    """Limit a staff user who is not a superuser to the projects they manage (see the module's docstring).

    Filter on the project with ``admin.RelatedOnlyFieldListFilter``: the plain filter would list
    every project's name.

    ``project_lookup`` is the path from the model to its project ("" for Project itself); left None
    it is found from the model's foreign keys, and a model of no project (a GPU worker) is not filtered.
    ``fixed_once_saved`` names fields shown read only on a change page (a ranking's task).
    """

    project_lookup: str | None = None
    any_user_fields: tuple[str, ...] = ()
    fixed_once_saved: tuple[str, ...] = ()

    def _own_project_path(self) -> str | None:
        return self.project_lookup if self.project_lookup is not None else project_path(self.model)

    def _managed_project_ids(self, request):
        return managed_project_ids(request.user)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        path = self._own_project_path()
        if request.user.is_superuser or path is None:
            return queryset
        return queryset.filter(**{f"{path}__in" if path else "pk__in": self._managed_project_ids(request)})

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            readonly += [name for name in self.fixed_once_saved if name not in readonly]
        return readonly

    def scoped_choices(self, request, db_field, queryset=None) -> models.QuerySet | None:
        """The rows of ``db_field``'s model this user may pick, or None when every row may be picked."""
        if request.user.is_superuser:
            return None
        related = db_field.related_model
        if queryset is None:
            queryset = related._default_manager.all()
        path = project_path(related)
        if path is not None:
            return queryset.filter(**{f"{path}__in" if path else "pk__in": self._managed_project_ids(request)})
        if related is get_user_model() and db_field.name not in self.any_user_fields:
            members = Membership.objects.filter(project__in=self._managed_project_ids(request)).values("user_id")
            return queryset.filter(pk__in=members)
        return None

    def _base_choices(self, request, db_field, kwargs) -> models.QuerySet | None:
        if kwargs.get("queryset") is not None:
            return kwargs["queryset"]
        return self.get_field_queryset(kwargs.get("using"), db_field, request)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        db = kwargs.get("using")
        queryset = self.scoped_choices(request, db_field, self._base_choices(request, db_field, kwargs))
        if queryset is not None:
            kwargs["queryset"] = queryset
            if "widget" not in kwargs and db_field.name in self.raw_id_fields:
                kwargs["widget"] = ScopedForeignKeyRawIdWidget(
                    db_field.remote_field, self.admin_site, queryset=queryset, using=db
                )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        queryset = self.scoped_choices(request, db_field, self._base_choices(request, db_field, kwargs))
        if queryset is not None:
            kwargs["queryset"] = queryset
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        for name in list(initial):
            try:
                db_field = self.model._meta.get_field(name)
            except FieldDoesNotExist:  # Django ignores an unknown name too
                continue
            if not db_field.is_relation or db_field.related_model is None:
                continue
            allowed = self.scoped_choices(request, db_field)
            if allowed is None:
                continue
            values = initial[name] if isinstance(initial[name], list) else [initial[name]]
            key = db_field.target_field.name if db_field.many_to_one or db_field.one_to_one else "pk"
            try:
                every_one_allowed = allowed.filter(**{f"{key}__in": values}).count() == len(set(values))
            except (ValueError, TypeError):
                every_one_allowed = False
            if not every_one_allowed:
                del initial[name]  # the page starts empty rather than naming a row of another project
        return initial

    def save_form(self, request, form, change):
        # before any save_model: several admins write through a service of their own there
        obj = super().save_form(request, form, change)
        self.check_in_managed_project(request, obj)
        return obj

    def check_in_managed_project(self, request, obj) -> None:
        """Refuse to save ``obj`` unless it belongs to a project the user manages."""
        path = self._own_project_path()
        if request.user.is_superuser or path is None:
            return
        project_id = project_id_of(obj, path)
        if project_id is None or not self._managed_project_ids(request).filter(project_id=project_id).exists():
            raise PermissionDenied("This belongs to a project you don't manage.")


def autocomplete_user_choices(request, queryset: models.QuerySet) -> models.QuerySet:
    """Limit a user autocomplete opened from a scoped admin's field to the people that field may pick.

    Django answers an autocomplete with the *target's* admin (the user admin, which a manager may see
    whole), so the user admin calls this from ``get_search_results``: the dialogue author picker lists
    the managed projects' members, while a new member is still searched among everyone.
    """
    match = getattr(request, "resolver_match", None)
    if request.user.is_superuser or match is None or match.url_name != "autocomplete":
        return queryset
    try:
        model = apps.get_model(request.GET["app_label"], request.GET["model_name"])
        source_admin = admin.site.get_model_admin(model)
        field = model._meta.get_field(request.GET["field_name"])
    except (KeyError, LookupError, NotRegistered, FieldDoesNotExist):
        return queryset  # Django's view refuses these itself
    if not isinstance(source_admin, ManagedProjectsAdminMixin):
        return queryset
    scoped = source_admin.scoped_choices(request, field, queryset)
    return queryset if scoped is None else scoped
