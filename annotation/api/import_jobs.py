"""REST API for prompt and demonstration import jobs: start an import on the worker, then poll its progress (managers)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.api.dialogues import (
    ImportLinesOutputSerializer,
    ImportSkippedOutputSerializer,
    ProjectImportInputSerializer,
)
from annotation.models import ImportJobState, ProjectImportJob, Role
from annotation.selectors import project_get_for_user
from annotation.services.import_jobs import project_import_job_get_for_manager, project_import_job_start
from annotation.services.imports import IMPORTED_DIALOGUE_STATUSES, KINDS

RECENT_JOBS = 20


class ProjectImportJobReportSerializer(serializers.Serializer):
    duplicates = ImportLinesOutputSerializer(required=False)
    skipped = ImportSkippedOutputSerializer(required=False)


class ProjectImportJobOutputSerializer(serializers.ModelSerializer):
    project = serializers.IntegerField(source="project_id")
    state = serializers.ChoiceField(choices=ImportJobState.choices)
    kind = serializers.ChoiceField(choices=KINDS)
    dialogue_status = serializers.ChoiceField(choices=IMPORTED_DIALOGUE_STATUSES)
    progress = serializers.FloatField(help_text="Share of the file's lines read, 0 to 1.")
    report = ProjectImportJobReportSerializer(help_text="Once done: duplicate lines and lines skipped as invalid.")
    errors = serializers.ListField(child=serializers.CharField(), help_text='When refused: ["line N: why"].')
    url = serializers.SerializerMethodField()

    class Meta:
        model = ProjectImportJob
        fields = [
            "id", "url", "project", "format", "kind", "skip_invalid", "dialogue_status", "file_name", "size_bytes",
            "state", "progress", "lines_total", "lines_done", "rows", "created", "duplicates_count", "invalid_count",
            "report", "error", "error_line", "errors", "created_at", "started_at", "finished_at",
        ]

    def get_url(self, job) -> str:
        return f"/api/import-jobs/{job.pk}/"


class ProjectImportJobCollectionApi(APIView):
    """Start importing prompts or demonstrations from a file on the worker (managers); poll the job's URL.

    Any size up to `RLHF_IMPORT_JOB_MAX_BYTES`. All or nothing unless `skip_invalid`; a refused file
    names its wrong line (`error_line`, `errors`); duplicates are skipped and reported.
    """

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": ProjectImportInputSerializer},
        responses={202: ProjectImportJobOutputSerializer, 413: OpenApiResponse(description="File too large.")},
    )
    def post(self, request, project_id: int):
        project = project_get_for_user(user=request.user, project_id=project_id, role=Role.MANAGER)
        serializer = ProjectImportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        job = project_import_job_start(
            project=project, user=request.user, upload=data["file"], format=data["format"],
            skip_invalid=data["skip_invalid"], dialogue_status=data["dialogue_status"],
        )
        return Response(ProjectImportJobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=ProjectImportJobOutputSerializer(many=True))
    def get(self, request, project_id: int):
        """The project's 20 latest prompt and demonstration import jobs, newest first."""
        project = project_get_for_user(user=request.user, project_id=project_id, role=Role.MANAGER)
        jobs = ProjectImportJob.objects.filter(project=project).order_by("-created_at", "-id")[:RECENT_JOBS]
        return Response(ProjectImportJobOutputSerializer(jobs, many=True).data)


class ProjectImportJobDetailApi(APIView):
    """An import job: its state, lines read of the file's total, then what it created or why nothing (managers)."""

    @extend_schema(responses=ProjectImportJobOutputSerializer)
    def get(self, request, job_id: int):
        job = project_import_job_get_for_manager(user=request.user, job_id=job_id)
        return Response(ProjectImportJobOutputSerializer(job).data)
