"""Sampling jobs: a model answers prompts K times and the answers become ranking tasks."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from ranking.models import MAX_RESPONSES, MIN_RESPONSES
from training.api.common import (
    TrainingErrorOutputSerializer,
    TrainingModelRefSerializer,
    choice_filter,
    choice_parameter,
    in_project,
    project_filter,
    project_parameter,
)
from training.models import DatasetSnapshot, ModelVersion, RunState, RunTrigger, SamplingJob
from training.selectors.access import sampling_job_get_for_user, training_project_get
from training.selectors.lists import sampling_job_list
from training.services.sampling import sampling_job_start


class SamplingJobOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    model = TrainingModelRefSerializer(help_text="The model answering.")
    source = serializers.ChoiceField(choices=SamplingJob.Source.choices)
    num_prompts = serializers.IntegerField()
    responses_per_prompt = serializers.IntegerField()
    run = serializers.IntegerField(source="run_id", help_text="The sample run executing it (follow it at /api/runs/{id}/).")
    state = serializers.ChoiceField(source="run.state", choices=RunState.choices, help_text="Its run's state.")
    error = serializers.CharField(source="run.error", help_text="Its run's error.")
    tasks_created = serializers.IntegerField(help_text="Ranking tasks made from the answers (once the run succeeded).")
    tasks_skipped = serializers.IntegerField(help_text="Prompts whose answers made no task (too few, or a duplicate).")
    ingested_at = serializers.DateTimeField(allow_null=True)
    trigger = serializers.ChoiceField(choices=RunTrigger.choices)
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class SamplingJobListCreateApi(generics.ListAPIView):
    """List the sampling jobs of my projects (?project=, ?state=), or start one (202)."""

    serializer_class = SamplingJobOutputSerializer

    class SamplingJobCreateInputSerializer(serializers.Serializer):
        project = serializers.IntegerField()
        model = serializers.IntegerField(help_text="A base, SFT or policy model of the project.")
        num_prompts = serializers.IntegerField(min_value=1, max_value=100_000)
        responses_per_prompt = serializers.IntegerField(
            required=False, allow_null=True, min_value=MIN_RESPONSES, max_value=MAX_RESPONSES,
            help_text="K; default: the project's answers per ranking task.",
        )
        snapshot = serializers.IntegerField(
            required=False, allow_null=True,
            help_text="A prompts snapshot to answer; none: the queue's active prompts this model has not answered.",
        )
        config = serializers.DictField(
            required=False, allow_null=True, help_text="Sampling settings (max_new_tokens, temperature, top_p…).",
        )

    @extend_schema(parameters=[project_parameter(), choice_parameter("state", RunState.values)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return sampling_job_list(
            user=self.request.user, project=project_filter(self.request),
            state=choice_filter(self.request, "state", RunState.values),
        )

    @extend_schema(
        request=SamplingJobCreateInputSerializer,
        responses={202: SamplingJobOutputSerializer, 400: TrainingErrorOutputSerializer},
        examples=[OpenApiExample("Fifty prompts, four answers each", request_only=True, value={
            "project": 1, "model": 9, "num_prompts": 50, "responses_per_prompt": 4,
            "config": {"max_new_tokens": 256, "temperature": 0.9},
        })],
    )
    def post(self, request):
        serializer = self.SamplingJobCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = training_project_get(user=request.user, project_id=data["project"])
        job = sampling_job_start(
            project=project,
            model=in_project(ModelVersion.objects.all(), project=project, object_id=data["model"], field="model",
                             what="model"),
            num_prompts=data["num_prompts"],
            responses_per_prompt=data.get("responses_per_prompt"),
            snapshot=None if data.get("snapshot") is None else in_project(
                DatasetSnapshot.objects.all(), project=project, object_id=data["snapshot"], field="snapshot",
                what="snapshot"),
            config_overrides=data.get("config"),
            created_by=request.user,
        )
        job = sampling_job_get_for_user(user=request.user, job_id=job.pk)
        return Response(SamplingJobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class SamplingJobDetailApi(APIView):
    """A sampling job: its run's state, and the ranking tasks it made once the run succeeded."""

    @extend_schema(responses=SamplingJobOutputSerializer)
    def get(self, request, job_id: int):
        job = sampling_job_get_for_user(user=request.user, job_id=job_id)
        return Response(SamplingJobOutputSerializer(job).data)
