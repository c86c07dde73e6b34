"""Dataset snapshots: list, ask for one (built on the default queue), read, download the frozen file."""

from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from training.api.common import (
    TrainingErrorOutputSerializer,
    choice_filter,
    choice_parameter,
    project_filter,
    project_parameter,
)
from training.models import SnapshotKind, SnapshotState
from training.selectors.access import snapshot_get_for_user, training_project_get
from training.selectors.lists import snapshot_list
from training.services.snapshots import snapshot_file_open, snapshot_request


class DatasetSnapshotOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    kind = serializers.ChoiceField(choices=SnapshotKind.choices)
    state = serializers.ChoiceField(choices=SnapshotState.choices)
    options = serializers.JSONField(help_text="The export options it was built with (defaults filled in).")
    labels_until = serializers.DateTimeField(help_text="Labels made up to this instant are in the file, later ones not.")
    sha256 = serializers.CharField(help_text="Of the file; empty until ready.")
    row_count = serializers.IntegerField()
    size_bytes = serializers.IntegerField()
    error = serializers.CharField(help_text="Why it failed (e.g. no accepted demonstrations yet).")
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class DatasetSnapshotListCreateApi(generics.ListAPIView):
    """List the snapshots of my projects (?project=, ?kind=, ?state=), or freeze a project's labels into a new one (202)."""

    serializer_class = DatasetSnapshotOutputSerializer

    class DatasetSnapshotCreateInputSerializer(serializers.Serializer):
        project = serializers.IntegerField()
        kind = serializers.ChoiceField(choices=SnapshotKind.choices)
        options = serializers.DictField(
            required=False, allow_null=True,
            help_text='preferences: {"pairs": "labeler"|"consensus", "include_all_bad": bool}; '
                      'prompts: {"limit": int, "not_sampled_by": model id}; sft: none.',
        )

    @extend_schema(parameters=[project_parameter(), choice_parameter("kind", SnapshotKind.values),
                               choice_parameter("state", SnapshotState.values)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return snapshot_list(
            user=self.request.user, project=project_filter(self.request),
            kind=choice_filter(self.request, "kind", SnapshotKind.values),
            state=choice_filter(self.request, "state", SnapshotState.values),
        )

    @extend_schema(
        request=DatasetSnapshotCreateInputSerializer,
        responses={202: DatasetSnapshotOutputSerializer, 400: TrainingErrorOutputSerializer},
        examples=[OpenApiExample("Consensus preference pairs", request_only=True,
                                 value={"project": 1, "kind": "preferences", "options": {"pairs": "consensus"}})],
    )
    def post(self, request):
        serializer = self.DatasetSnapshotCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = training_project_get(user=request.user, project_id=data["project"])
        snapshot = snapshot_request(project=project, kind=data["kind"], options=data.get("options"), created_by=request.user)
        return Response(DatasetSnapshotOutputSerializer(snapshot).data, status=status.HTTP_202_ACCEPTED)


class DatasetSnapshotDetailApi(APIView):
    """A snapshot: its state, file hash, rows, size, the instant its labels stop, its options or its error."""

    @extend_schema(responses=DatasetSnapshotOutputSerializer)
    def get(self, request, snapshot_id: int):
        snapshot = snapshot_get_for_user(user=request.user, snapshot_id=snapshot_id)
        return Response(DatasetSnapshotOutputSerializer(snapshot).data)


class DatasetSnapshotDownloadApi(APIView):
    """Stream the snapshot's JSONL file, exactly the bytes runs read (`X-Sha256` and `X-Row-Count` headers)."""

    @extend_schema(
        responses={
            (200, "application/jsonl"): OpenApiResponse(OpenApiTypes.BINARY, description="The JSONL file."),
            409: OpenApiResponse(TrainingErrorOutputSerializer, description="Still building, or it failed."),
        },
    )
    def get(self, request, snapshot_id: int):
        snapshot = snapshot_get_for_user(user=request.user, snapshot_id=snapshot_id)
        handle = snapshot_file_open(snapshot=snapshot, downloaded_by=request.user)
        filename = f"{snapshot.project.slug}-{snapshot.kind}-snapshot-{snapshot.pk}.jsonl"
        response = FileResponse(handle, as_attachment=True, filename=filename, content_type="application/jsonl")
        response["X-Sha256"] = snapshot.sha256
        response["X-Row-Count"] = str(snapshot.row_count)
        return response
