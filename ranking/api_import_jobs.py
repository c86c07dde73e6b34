"""REST API for import jobs: start a ranking-task import on the worker, then poll its progress (managers)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response as ApiResponse
from rest_framework.views import APIView

from annotation.models import Role
from annotation.selectors import project_get_for_user
from ranking.models import ImportJobState, RankingImportJob
from ranking.services.import_jobs import ranking_import_job_get_for_manager, ranking_import_job_start
from ranking.services.imports import FORMATS


class RankingImportJobOutputSerializer(serializers.ModelSerializer):
    project = serializers.IntegerField(source="project_id")
    state = serializers.ChoiceField(choices=ImportJobState.choices)
    progress = serializers.FloatField(help_text="Share of the file's lines read, 0 to 1.")
    url = serializers.SerializerMethodField()

    class Meta:
        model = RankingImportJob
        fields = [
            "id", "url", "project", "format", "skip_invalid", "file_name", "size_bytes", "state", "progress",
            "lines_total", "lines_done", "tasks_created", "rankings_imported", "duplicates_count", "invalid_count",
            "report", "error", "error_line", "errors", "created_at", "started_at", "finished_at",
        ]

    def get_url(self, job) -> str:
        return f"/api/ranking-imports/{job.pk}/"


class RankingImportJobCollectionApi(APIView):
    """Start importing a ranking-task JSONL file on the worker (managers); poll the job's URL for its progress.

    All or nothing unless `skip_invalid`; a refused file names its wrong lines (`errors`, `error_line`).
    """

    parser_classes = [MultiPartParser, FormParser]

    class RankingImportJobInputSerializer(serializers.Serializer):
        file = serializers.FileField()
        format = serializers.ChoiceField(choices=FORMATS)
        skip_invalid = serializers.BooleanField(
            default=False, help_text="Skip bad lines and report them instead of refusing the whole file."
        )

    @extend_schema(request={"multipart/form-data": RankingImportJobInputSerializer},
                   responses={202: RankingImportJobOutputSerializer})
    def post(self, request, project_id: int):
        project = project_get_for_user(user=request.user, project_id=project_id, role=Role.MANAGER)
        serializer = self.RankingImportJobInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        job = ranking_import_job_start(project=project, user=request.user, upload=data["file"],
                                       format=data["format"], skip_invalid=data["skip_invalid"])
        return ApiResponse(RankingImportJobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=RankingImportJobOutputSerializer(many=True))
    def get(self, request, project_id: int):
        """The project's 20 latest import jobs, newest first."""
        project = project_get_for_user(user=request.user, project_id=project_id, role=Role.MANAGER)
        jobs = RankingImportJob.objects.filter(project=project).order_by("-created_at", "-id")[:20]
        return ApiResponse(RankingImportJobOutputSerializer(jobs, many=True).data)


class RankingImportJobDetailApi(APIView):
    """An import job: its state, lines read of the file's total, then what it created or why nothing (managers)."""

    @extend_schema(responses=RankingImportJobOutputSerializer)
    def get(self, request, job_id: int):
        job = ranking_import_job_get_for_manager(user=request.user, job_id=job_id)
        return ApiResponse(RankingImportJobOutputSerializer(job).data)
