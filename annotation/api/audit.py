"""REST API for a project's audit trail (managers)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers

from annotation.models import Role
from annotation.selectors.projects import project_get_for_user
from audit.models import AuditAction
from audit.selectors import audit_event_list
from config.exceptions import ApplicationError
from config.pagination import KeysetPagination


class AuditEventOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor = serializers.IntegerField(source="actor_id", allow_null=True)
    actor_name = serializers.CharField(help_text="The actor's username at the time; empty for the platform itself.")
    action = serializers.ChoiceField(choices=AuditAction.choices)
    object_type = serializers.CharField()
    object_id = serializers.CharField()
    object_repr = serializers.CharField()
    details = serializers.JSONField()


class ProjectAuditListApi(generics.ListAPIView):
    """The project's audit trail, newest first (managers): exports, imports, role changes, promotions,
    runs triggered, cancelled and resumed. `?action=` keeps one kind; `limit` and the `next` link's cursor page it."""

    serializer_class = AuditEventOutputSerializer
    pagination_class = KeysetPagination

    @extend_schema(parameters=[OpenApiParameter("action", str, enum=AuditAction.values)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        project = project_get_for_user(user=self.request.user, project_id=self.kwargs["project_id"], role=Role.MANAGER)
        action = self.request.query_params.get("action") or None
        if action is not None and action not in AuditAction.values:
            raise ApplicationError(f"action must be one of {', '.join(AuditAction.values)}; got {action!r}.")
        return audit_event_list(project_id=project.pk, action=action)
