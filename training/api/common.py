"""What the training API's modules share: filters, id lookups inside a project, short references, errors."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from annotation.models import Project
from config.exceptions import ApplicationError
from config.ids import parse_object_id
from training.models import ModelKind, RunKind, RunState, SnapshotKind, SnapshotState
from training.selectors.access import training_project_get

# ---- query-string filters ----


def project_filter(request) -> Project | None:
    """Return the project of ``?project=ID`` (404 unless the user may drive its training), or None when absent."""
    raw = request.query_params.get("project")
    if raw in (None, ""):
        return None
    return training_project_get(user=request.user, project_id=raw)


def choice_filter(request, name: str, choices: list[str]) -> str | None:
    """Return ``?name=`` when it is one of ``choices``; None when absent; 400 naming it otherwise."""
    value = request.query_params.get(name) or None
    if value is not None and value not in choices:
        raise serializers.ValidationError({name: [f"must be one of {', '.join(choices)}; got {value!r}."]})
    return value


def project_parameter() -> OpenApiParameter:
    return OpenApiParameter("project", OpenApiTypes.INT, description="Only this project's (404 if you can't see it).")


def choice_parameter(name: str, choices: list[str]) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.STR, enum=choices, description=f"Only this {name}.")


def in_project(queryset: QuerySet, *, project: Project, object_id, field: str, what: str):
    """Return the object of ``project`` with that id, or answer 400 naming ``field``.

    An id of another project answers exactly like one that doesn't exist, so ids leak nothing.
    """
    obj = queryset.filter(pk=parse_object_id(object_id), project=project).first()
    if obj is None:
        message = f"No {what} {object_id} in this project."
        raise ApplicationError(f"{field}: {message}", extra={"errors": {field: [message]}})
    return obj


# ---- short references to related objects (names are unique project-wide: components are named by class) ----


class TrainingModelRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=ModelKind.choices)


class TrainingRunRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=RunKind.choices)
    state = serializers.ChoiceField(choices=RunState.choices)


class TrainingSnapshotRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=SnapshotKind.choices)
    state = serializers.ChoiceField(choices=SnapshotState.choices)
    sha256 = serializers.CharField(help_text="Empty until ready.")
    row_count = serializers.IntegerField()


class TrainingErrorOutputSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What to fix, in words.")
    errors = serializers.DictField(
        # a list field's errors come per item: {"models": {"0": ["A valid integer is required."]}}
        child=serializers.JSONField(), required=False,
        help_text='The request fields at fault, dotted, with their messages: {"config.learning_rat": ["unknown key …"]}.',
    )
    run = serializers.IntegerField(
        required=False, allow_null=True, help_text="409 on a trigger: the same run, already queued or running."
    )
