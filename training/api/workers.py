"""GPU workers as they last reported themselves (ML engineers and staff)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import BasePermission, IsAuthenticated

from annotation.selectors import user_can_use_training_api
from training.api.common import TrainingRunRefSerializer
from training.models import GpuWorker
from training.selectors.access import projects_for_training
from training.selectors.lists import worker_is_alive, workers_list


class CanSeeGpuWorkers(BasePermission):
    message = "Only ML engineers and staff see the GPU workers."

    def has_permission(self, request, view) -> bool:
        return bool(request.user.is_staff or user_can_use_training_api(user=request.user))


class GpuWorkerOutputSerializer(serializers.Serializer):
    hostname = serializers.CharField()
    gpu_count = serializers.IntegerField()
    gpu_names = serializers.ListField(child=serializers.CharField())
    started_at = serializers.DateTimeField()
    last_heartbeat = serializers.DateTimeField()
    alive = serializers.BooleanField(help_text="It reported within RLHF_RUN_STALE_AFTER_SECONDS.")
    busy = serializers.BooleanField(help_text="It holds a run.")
    current_run = TrainingRunRefSerializer(
        source="visible_run", allow_null=True, help_text="The run it holds, if it is one of your projects'."
    )


class GpuWorkerListApi(generics.ListAPIView):
    """The GPU workers seen, whether each is alive and what it runs now."""

    permission_classes = [IsAuthenticated, CanSeeGpuWorkers]
    pagination_class = LimitOffsetPagination  # always: paginate_queryset adds what the serializer reads
    serializer_class = GpuWorkerOutputSerializer

    def get_queryset(self):
        return workers_list()

    def paginate_queryset(self, queryset):
        workers: list[GpuWorker] = super().paginate_queryset(queryset)
        visible = set(projects_for_training(user=self.request.user).values_list("pk", flat=True))
        for worker in workers:
            run = worker.current_run
            worker.alive = worker_is_alive(worker)
            worker.busy = run is not None
            worker.visible_run = run if run is not None and run.project_id in visible else None
        return workers

    @extend_schema(responses=GpuWorkerOutputSerializer(many=True))
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
