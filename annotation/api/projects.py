"""REST API for authentication tokens and projects. One class per operation."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.login_throttle import (
    client_address,
    login_block_get,
    login_failure_record,
    login_failures_clear,
)
from annotation.markdown import render_markdown
from annotation.models import ApiToken, ApiTokenRevocation, Project, Role
from annotation.selectors.projects import (
    membership_get,
    project_get_for_user,
    project_list_for_user_detailed,
    project_members,
)
from annotation.services.api_tokens import api_token_create, api_token_revoke


class TokenObtainApi(APIView):
    """Exchange a username and password for a new API token (`Authorization: Token <token>`).

    Every call creates a token (named `name`, default "API login") that expires after
    RLHF_API_TOKEN_DAYS; only its hash is kept. Failed tries are throttled like the login page's,
    per canonical username and, at a much higher count, per client address.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]

    class TokenInputSerializer(serializers.Serializer):
        username = serializers.CharField()
        password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
        name = serializers.CharField(max_length=100, required=False, default="API login")

    class TokenOutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        name = serializers.CharField()
        expires_at = serializers.DateTimeField()

    @extend_schema(
        request=TokenInputSerializer,
        responses={
            200: TokenOutputSerializer,
            400: inline_serializer("TokenRefused", {
                "detail": serializers.CharField(),
                "tries_left": serializers.IntegerField(required=False, help_text="After a wrong password."),
                "errors": serializers.DictField(required=False, help_text="When a field is missing or malformed."),
            }),
            429: inline_serializer("TokenThrottled", {"detail": serializers.CharField(),
                                                      "retry_after": serializers.IntegerField()}),
        },
        auth=[],
    )
    def post(self, request):
        serializer = self.TokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        username = serializer.validated_data["username"]
        address = client_address(request)
        block = login_block_get(username=username, address=address)
        if block is not None:
            return Response(
                {"detail": block.message, "retry_after": block.retry_after},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(block.retry_after)},
            )
        user = authenticate(request, username=username, password=serializer.validated_data["password"])
        if user is None:
            tries_left = login_failure_record(username=username, address=address)
            return Response(
                {"detail": "Wrong username or password.", "tries_left": tries_left},
                status=status.HTTP_400_BAD_REQUEST,
            )
        login_failures_clear(username=username)
        token, secret = api_token_create(user=user, name=serializer.validated_data["name"])
        return Response(
            self.TokenOutputSerializer({"token": secret, "name": token.name, "expires_at": token.expires_at}).data
        )


class TokenRevokeApi(APIView):
    """Revoke the API token this request authenticates with (log out a script)."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        if not isinstance(request.auth, ApiToken):
            return Response(
                {"detail": "Send the token to revoke in the Authorization header."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        api_token_revoke(token=request.auth, reason=ApiTokenRevocation.LOGOUT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectOutputSerializer(serializers.ModelSerializer):
    my_role = serializers.SerializerMethodField()
    guidelines_html = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "id", "name", "slug", "description", "is_archived", "created_at", "my_role",
            "demonstrations_per_prompt", "accepts_required", "responses_per_task", "rankings_per_task",
            "gold_rate", "lease_minutes", "guidelines_html",
        ]

    def get_my_role(self, project) -> str | None:
        if hasattr(project, "my_role"):  # annotated by project_list_for_user_detailed
            return project.my_role
        membership = membership_get(user=self.context["request"].user, project=project)
        return membership.role if membership else None

    def get_guidelines_html(self, project) -> str:
        if hasattr(project, "guidelines_newest_first"):  # prefetched by project_list_for_user_detailed
            guideline = project.guidelines_newest_first[0] if project.guidelines_newest_first else None
        else:
            guideline = project.current_guideline
        return str(render_markdown(guideline.body)) if guideline else ""


class ProjectListApi(APIView):
    """List the projects I belong to."""

    @extend_schema(responses=ProjectOutputSerializer(many=True))
    def get(self, request):
        projects = project_list_for_user_detailed(user=request.user)
        return Response(ProjectOutputSerializer(projects, many=True, context={"request": request}).data)


class ProjectDetailApi(APIView):
    """One of my projects; 404 for projects I don't belong to."""

    @extend_schema(responses=ProjectOutputSerializer)
    def get(self, request, project_id: int):
        project = project_get_for_user(user=request.user, project_id=project_id)
        return Response(ProjectOutputSerializer(project, context={"request": request}).data)


class ProjectMemberListApi(APIView):
    """The members of a project and their roles (managers only)."""

    class MemberOutputSerializer(serializers.Serializer):
        user_id = serializers.IntegerField(source="user.id")
        username = serializers.CharField(source="user.username")
        role = serializers.ChoiceField(choices=Role.choices)
        joined_at = serializers.DateTimeField(source="created_at")

    @extend_schema(responses=MemberOutputSerializer(many=True))
    def get(self, request, project_id: int):
        project = project_get_for_user(user=request.user, project_id=project_id, role=Role.MANAGER)
        return Response(self.MemberOutputSerializer(project_members(project=project), many=True).data)


class MarkdownPreviewApi(APIView):
    """Render Markdown the way other people will see it (sanitised)."""

    class MarkdownPreviewInputSerializer(serializers.Serializer):
        text = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=100_000)

    @extend_schema(
        request=MarkdownPreviewInputSerializer,
        responses=inline_serializer("MarkdownPreviewOutput", {"html": serializers.CharField()}),
    )
    def post(self, request):
        serializer = self.MarkdownPreviewInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response({"html": str(render_markdown(serializer.validated_data["text"]))})
