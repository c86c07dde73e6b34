"""Training runs: list, trigger, read, cancel, resume, follow (metrics, log)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from training.api.common import (
    TrainingErrorOutputSerializer,
    TrainingModelRefSerializer,
    TrainingSnapshotRefSerializer,
    choice_filter,
    choice_parameter,
    in_project,
    project_filter,
    project_parameter,
)
from training.models import DatasetSnapshot, ModelVersion, RunKind, RunState, RunTrigger, TrainingRun
from training.selectors.access import run_get_for_user, training_project_get
from training.selectors.lists import metric_point_latest, metric_points, run_list
from training.services.execution import ENGINE_LOG, run_log_tail
from training.services.runs import run_cancel, run_resume, run_trigger
from training.services.storage import data_path

# Kinds a person triggers here; sampling runs start as sampling jobs, import-gguf / make-tiny as models.
TRIGGERED_KIND_CHOICES = [(kind.value, kind.label) for kind in (RunKind.SFT, RunKind.REWARD, RunKind.DPO, RunKind.PPO)]
LOG_TAIL_BYTES = 64 * 1024


class TrainingRunProgressSerializer(serializers.Serializer):
    step = serializers.IntegerField(help_text="The newest step the engine logged.")
    total_steps = serializers.IntegerField(allow_null=True)
    fraction = serializers.FloatField(source="progress", allow_null=True, help_text="step / total_steps, 0 to 1.")
    eta_seconds = serializers.IntegerField(allow_null=True)


class TrainingRunOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    kind = serializers.ChoiceField(choices=RunKind.choices)
    state = serializers.ChoiceField(choices=RunState.choices)
    trigger = serializers.ChoiceField(choices=RunTrigger.choices)
    cancel_requested = serializers.BooleanField(help_text="A running run was asked to stop; it checkpoints first.")
    attempt = serializers.IntegerField(help_text="Attempts started so far (a lost worker's run is tried again).")
    max_attempts = serializers.IntegerField()
    worker = serializers.CharField(help_text="The worker holding (or last holding) it.")
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    progress = TrainingRunProgressSerializer(source="*")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.FloatField(allow_null=True, help_text="Until now while it runs.")
    snapshot = TrainingSnapshotRefSerializer(allow_null=True, help_text="The frozen labels it reads.")
    input_model = TrainingModelRefSerializer(allow_null=True)
    reward_model = TrainingModelRefSerializer(allow_null=True)
    output_name = serializers.CharField(help_text="Name of the model version it makes (empty: a generated one).")
    output_model = TrainingModelRefSerializer(allow_null=True, help_text="The model version it made, once succeeded.")
    sampling_job = serializers.IntegerField(source="sampling_job.pk", allow_null=True, help_text="Sampling runs.")
    error = serializers.CharField()
    exit_code = serializers.IntegerField(allow_null=True)
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)


class TrainingRunDetailOutputSerializer(TrainingRunOutputSerializer):
    config = serializers.JSONField(help_text="config.json exactly as the engine reads it.")
    result = serializers.JSONField(allow_null=True, help_text="The engine's result.json, once finished.")
    latest_metrics = serializers.JSONField(allow_null=True, help_text='The newest logged point: {"step", …figures}.')


def run_payload(run: TrainingRun, *, user) -> dict:
    """Describe the run as its detail page shows it (read again: what a service returned may lack relations)."""
    run = run_get_for_user(user=user, run_id=run.pk)
    run.latest_metrics = metric_point_latest(run=run)
    return TrainingRunDetailOutputSerializer(run).data


RUN_EXAMPLE = {
    "id": 41, "project": 1, "kind": "sft", "state": "running", "trigger": "manual", "cancel_requested": False,
    "attempt": 1, "max_attempts": 3, "worker": "gpu-node-1:4242", "heartbeat_at": "2025-05-02T10:15:04Z",
    "progress": {"step": 120, "total_steps": 400, "fraction": 0.3, "eta_seconds": 610},
    "created_at": "2025-05-02T10:11:30Z", "started_at": "2025-05-02T10:11:41Z", "finished_at": None,
    "duration_seconds": 203.2,
    "snapshot": {"id": 17, "kind": "sft", "state": "ready", "sha256": "9b1f…", "row_count": 1250},
    "input_model": {"id": 7, "name": "qwen2.5-0.5b-instruct", "kind": "base"}, "reward_model": None,
    "output_name": "sft-v2", "output_model": None, "sampling_job": None, "error": "", "exit_code": None,
    "created_by": "engineer",
    "config": {"model_path": "/data/models/qwen2.5-0.5b-instruct", "train_file": "train.jsonl", "num_epochs": 2,
               "learning_rate": 2e-5},
    "result": None, "latest_metrics": {"step": 120, "loss": 1.284, "learning_rate": 1.9e-5, "epoch": 0.6},
}


class TrainingRunListCreateApi(generics.ListAPIView):
    """List the runs of my projects (?project=, ?kind=, ?state=), or trigger one: 202, queued on a GPU worker."""

    serializer_class = TrainingRunOutputSerializer

    class TrainingRunTriggerInputSerializer(serializers.Serializer):
        project = serializers.IntegerField()
        kind = serializers.ChoiceField(
            choices=TRIGGERED_KIND_CHOICES,
            help_text="Sampling runs start as sampling jobs; import-gguf and make-tiny as models (/api/models/).",
        )
        input_model = serializers.IntegerField(help_text="The model trained (PPO: the policy).")
        reward_model = serializers.IntegerField(required=False, allow_null=True, help_text="PPO: the reward model.")
        snapshot = serializers.IntegerField(
            required=False, allow_null=True, help_text="Train on this snapshot; none: a fresh one is built first."
        )
        snapshot_options = serializers.DictField(
            required=False, allow_null=True,
            help_text='The fresh snapshot\'s options, e.g. {"pairs": "consensus"} for preferences.',
        )
        config = serializers.DictField(
            required=False, allow_null=True,
            help_text="Engine settings over the project's template for the kind; refused keys are named "
                      "config.KEY. The platform sets model_path and the data files.",
        )
        name = serializers.CharField(
            required=False, allow_blank=True, max_length=200, default="", help_text="Name of the model it makes."
        )

    @extend_schema(
        parameters=[project_parameter(), choice_parameter("kind", RunKind.values),
                    choice_parameter("state", RunState.values)],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return run_list(
            user=self.request.user, project=project_filter(self.request),
            kind=choice_filter(self.request, "kind", RunKind.values),
            state=choice_filter(self.request, "state", RunState.values),
        )

    @extend_schema(
        request=TrainingRunTriggerInputSerializer,
        responses={
            202: TrainingRunDetailOutputSerializer,
            400: OpenApiResponse(TrainingErrorOutputSerializer, description="A field the run can't have."),
            409: OpenApiResponse(TrainingErrorOutputSerializer, description="The same run is already queued or "
                                 "running: `run` is its id."),
        },
        examples=[
            OpenApiExample("SFT", request_only=True, value={
                "project": 1, "kind": "sft", "input_model": 7, "config": {"num_epochs": 2, "learning_rate": 2e-5},
                "name": "sft-v2",
            }),
            OpenApiExample("PPO", request_only=True, value={
                "project": 1, "kind": "ppo", "input_model": 9, "reward_model": 11, "config": {"max_steps": 200},
            }),
            OpenApiExample("Reward model on consensus pairs", request_only=True, value={
                "project": 1, "kind": "reward", "input_model": 9, "snapshot_options": {"pairs": "consensus"},
            }),
            OpenApiExample("Queued", response_only=True, status_codes=["202"],
                           value={**RUN_EXAMPLE, "state": "queued", "attempt": 0, "worker": "", "heartbeat_at": None,
                                  "started_at": None, "duration_seconds": None, "latest_metrics": None,
                                  "progress": {"step": 0, "total_steps": None, "fraction": None, "eta_seconds": None}}),
            OpenApiExample("A misspelt config key", response_only=True, status_codes=["400"], value={
                "detail": "config: unknown key 'learning_rat' (did you mean 'learning_rate'?)",
                "errors": {"config.learning_rat": ["unknown key 'learning_rat' (did you mean 'learning_rate'?)"]},
            }),
            OpenApiExample("Already queued", response_only=True, status_codes=["409"], value={
                "detail": "The same sft run is already queued or running (run 41, queued).", "run": 41,
            }),
        ],
    )
    def post(self, request):
        serializer = self.TrainingRunTriggerInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = training_project_get(user=request.user, project_id=data["project"])
        models = ModelVersion.objects.all()
        run = run_trigger(
            project=project,
            kind=data["kind"],
            input_model=in_project(models, project=project, object_id=data["input_model"], field="input_model",
                                   what="model"),
            reward_model=None if data.get("reward_model") is None else in_project(
                models, project=project, object_id=data["reward_model"], field="reward_model", what="model"),
            snapshot=None if data.get("snapshot") is None else in_project(
                DatasetSnapshot.objects.all(), project=project, object_id=data["snapshot"], field="snapshot",
                what="snapshot"),
            snapshot_options=data.get("snapshot_options"),
            config_overrides=data.get("config"),
            output_name=data["name"],
            created_by=request.user,
        )
        return Response(run_payload(run, user=request.user), status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailApi(APIView):
    """A run: where it stands, what it reads, its config, the engine's result and its newest figures."""

    @extend_schema(
        responses=TrainingRunDetailOutputSerializer,
        examples=[OpenApiExample("Running", response_only=True, value=RUN_EXAMPLE)],
    )
    def get(self, request, run_id: int):
        run = run_get_for_user(user=request.user, run_id=run_id)
        return Response(run_payload(run, user=request.user))


class TrainingRunCancelApi(APIView):
    """Cancel a run: a queued one at once; a running one is asked to stop and checkpoints first (202)."""

    @extend_schema(
        request=None,
        responses={202: TrainingRunDetailOutputSerializer,
                   409: OpenApiResponse(TrainingErrorOutputSerializer, description="It has already finished.")},
    )
    def post(self, request, run_id: int):
        run = run_cancel(run=run_get_for_user(user=request.user, run_id=run_id), cancelled_by=request.user)
        return Response(run_payload(run, user=request.user), status=status.HTTP_202_ACCEPTED)


class TrainingRunResumeApi(APIView):
    """Queue a cancelled or failed run again; its engine resumes from the newest complete checkpoint (202)."""

    @extend_schema(
        request=None,
        responses={202: TrainingRunDetailOutputSerializer,
                   409: OpenApiResponse(TrainingErrorOutputSerializer, description="It is not cancelled or failed.")},
    )
    def post(self, request, run_id: int):
        run = run_resume(run=run_get_for_user(user=request.user, run_id=run_id), resumed_by=request.user)
        return Response(run_payload(run, user=request.user), status=status.HTTP_202_ACCEPTED)


class TrainingRunMetricsApi(APIView):
    """The run's logged points in step order; poll with ?after=last_step to get only the new ones."""

    class TrainingRunMetricsOutputSerializer(serializers.Serializer):
        points = serializers.ListField(
            child=serializers.DictField(), help_text='{"step", …figures the engine logged (loss, learning_rate…)}'
        )
        last_step = serializers.IntegerField(
            allow_null=True, help_text="The step to send as ?after= next time (null: nothing logged yet)."
        )

    @extend_schema(
        parameters=[OpenApiParameter("after", OpenApiTypes.INT, description="Only points of later steps.")],
        responses=TrainingRunMetricsOutputSerializer,
        examples=[
            OpenApiExample("Two new points", response_only=True, value={
                "points": [
                    {"step": 130, "loss": 1.262, "learning_rate": 1.88e-5, "grad_norm": 0.91, "epoch": 0.65},
                    {"step": 140, "loss": 1.241, "learning_rate": 1.86e-5, "grad_norm": 0.87, "epoch": 0.7},
                ],
                "last_step": 140,
            }),
            OpenApiExample("Nothing new", response_only=True, value={"points": [], "last_step": 140}),
        ],
    )
    def get(self, request, run_id: int):
        run = run_get_for_user(user=request.user, run_id=run_id)
        after = self._after(request)
        points = metric_points(run=run, after_step=after)
        last_step = points[-1]["step"] if points else after
        return Response(self.TrainingRunMetricsOutputSerializer({"points": points, "last_step": last_step}).data)

    @staticmethod
    def _after(request) -> int | None:
        raw = request.query_params.get("after")
        if raw in (None, ""):
            return None
        try:
            after = int(raw)
        except ValueError:
            after = -1
        if after < 0:
            raise serializers.ValidationError({"after": ["must be a step number (0 or more)."]})
        return after


class TrainingRunLogApi(APIView):
    """The end of the run's engine log (the last 64 KiB): what to read when it failed."""

    class TrainingRunLogOutputSerializer(serializers.Serializer):
        text = serializers.CharField(allow_blank=True, help_text="The tail, from a line start; empty before the engine starts.")
        size = serializers.IntegerField(help_text="The whole log's size in bytes.")

    @extend_schema(responses=TrainingRunLogOutputSerializer)
    def get(self, request, run_id: int):
        run = run_get_for_user(user=request.user, run_id=run_id)
        text = run_log_tail(run=run, max_bytes=LOG_TAIL_BYTES)
        return Response(self.TrainingRunLogOutputSerializer({"text": text, "size": _log_size(run)}).data)


def _log_size(run: TrainingRun) -> int:
    if not run.run_dir:
        return 0
    try:
        return (data_path(run.run_dir) / ENGINE_LOG).stat().st_size
    except OSError:
        return 0
