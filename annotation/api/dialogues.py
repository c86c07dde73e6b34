"""REST API for demonstrations: prompts, dialogues, review, the prompt queue, import and SFT export."""

from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import (
    PROMPT_MAX_CHARS,
    TURN_MAX_CHARS,
    TURNS_MAX,
    DialogueStatus,
    ReviewDecision,
    Role,
    TurnRole,
)
from annotation.selectors.dialogues import (
    dialogue_get_for_user,
    dialogue_get_own,
    dialogue_list_for_author,
    dialogue_review_queue,
    prompt_list_for_user,
    review_latest_rejection,
)
from annotation.selectors.projects import project_get_for_user, user_manages_project_data
from annotation.services.dialogues import (
    TurnData,
    dialogue_create,
    dialogue_discard,
    dialogue_review,
    dialogue_submit,
    dialogue_update,
    prompt_create,
    prompt_lease_next,
)
from annotation.services.exports import jsonl_stream, sft_export_prepare
from annotation.services.import_jobs import import_check_fits_request
from annotation.services.imports import FORMATS, IMPORTED_DIALOGUE_STATUSES, KINDS, project_import
from config.ids import parse_object_id
from config.pagination import KeysetPagination

PROJECT_PARAMETER = OpenApiParameter("project", OpenApiTypes.INT, description="Only this project (id).")


def _project_param(request, *, required: bool = False) -> int | None:
    raw = request.query_params.get("project")
    if raw in (None, ""):
        if required:
            raise serializers.ValidationError({"project": "Give the project id: ?project=ID."})
        return None
    project_id = parse_object_id(raw)
    if project_id is None:
        raise serializers.ValidationError({"project": "must be a project id (a positive integer)."})
    return project_id


# --- serializers (names unique in the whole project: drf-spectacular names components after them) ------


class DialogueTurnSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=TurnRole.choices)
    content = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=TURN_MAX_CHARS)


class DialogueReviewOutputSerializer(serializers.Serializer):
    reviewer = serializers.CharField(source="reviewer.username")
    round = serializers.IntegerField()
    decision = serializers.ChoiceField(choices=ReviewDecision.choices)
    comment = serializers.CharField()
    created_at = serializers.DateTimeField()


class DialoguePromptOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField()


class DialogueOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    author = serializers.CharField(source="author.username")
    prompt = DialoguePromptOutputSerializer(allow_null=True)
    status = serializers.ChoiceField(choices=DialogueStatus.choices)
    version = serializers.IntegerField(help_text="Send it back with updates; a stale one answers 409.")
    round = serializers.IntegerField(help_text="How many times it was submitted.")
    source = serializers.CharField()
    lease_expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    submitted_at = serializers.DateTimeField(allow_null=True)
    accepted_at = serializers.DateTimeField(allow_null=True)
    rejected_at = serializers.DateTimeField(allow_null=True)
    turns = DialogueTurnSerializer(many=True)
    reviews = DialogueReviewOutputSerializer(many=True)
    rejection_comment = serializers.SerializerMethodField()

    def get_rejection_comment(self, dialogue) -> str | None:
        if dialogue.status not in (DialogueStatus.REJECTED, DialogueStatus.REVISED):
            return None
        rejection = review_latest_rejection(dialogue=dialogue)
        return rejection.comment if rejection else None


def _dialogue_data(dialogue) -> dict:
    # re-read so that turns and reviews reflect the write that just happened
    return DialogueOutputSerializer(dialogue).data


def _turns(validated: list[dict]) -> list[TurnData]:
    return [TurnData(role=item["role"], content=item["content"]) for item in validated]


# --- prompts -----------------------------------------------------------------------------------------------


class PromptOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    text = serializers.CharField()
    source = serializers.CharField()
    is_active = serializers.BooleanField()
    held_out = serializers.BooleanField(help_text="Kept for evaluations: never served for demonstrations or sampled.")
    created_at = serializers.DateTimeField()
    demonstrations = serializers.IntegerField(help_text="Submitted or accepted dialogues for it.")
    accepted = serializers.IntegerField()


class PromptCreateInputSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    text = serializers.CharField(max_length=PROMPT_MAX_CHARS)


class PromptListCreateApi(generics.ListAPIView):
    """List the prompts of my projects (?project=ID for one), or add a prompt to a project's queue."""

    serializer_class = PromptOutputSerializer
    pagination_class = KeysetPagination  # pages by cursor: a deep page costs what the first costs

    @extend_schema(parameters=[PROJECT_PARAMETER])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return prompt_list_for_user(user=self.request.user, project_id=_project_param(self.request))

    @extend_schema(request=PromptCreateInputSerializer, responses={201: PromptOutputSerializer})
    def post(self, request):
        serializer = PromptCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = project_get_for_user(user=request.user, project_id=serializer.validated_data["project"])
        prompt = prompt_create(
            project=project, text=serializer.validated_data["text"], created_by=request.user
        )
        prompt = prompt_list_for_user(user=request.user).get(pk=prompt.pk)
        return Response(PromptOutputSerializer(prompt).data, status=status.HTTP_201_CREATED)


# --- dialogues ---------------------------------------------------------------------------------------------


class DialogueCreateInputSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    turns = DialogueTurnSerializer(many=True, required=False, max_length=TURNS_MAX)


class DialogueListCreateApi(generics.ListAPIView):
    """List my dialogues (?project=, ?status=), or start a draft with `turns: [{role, content}]`."""

    serializer_class = DialogueOutputSerializer
    pagination_class = KeysetPagination  # pages by cursor: a deep page costs what the first costs

    @extend_schema(
        parameters=[
            PROJECT_PARAMETER,
            OpenApiParameter(
                "status", OpenApiTypes.STR, enum=DialogueStatus.values, description="Only this status."
            ),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        status_filter = self.request.query_params.get("status") or None
        if status_filter and status_filter not in DialogueStatus.values:
            raise serializers.ValidationError(
                {"status": f"must be one of {', '.join(DialogueStatus.values)}."}
            )
        return dialogue_list_for_author(
            user=self.request.user, project_id=_project_param(self.request), status=status_filter
        )

    @extend_schema(request=DialogueCreateInputSerializer, responses={201: DialogueOutputSerializer})
    def post(self, request):
        serializer = DialogueCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = project_get_for_user(user=request.user, project_id=serializer.validated_data["project"])
        dialogue = dialogue_create(
            project=project, author=request.user, turns=_turns(serializer.validated_data.get("turns", []))
        )
        dialogue = dialogue_get_own(user=request.user, dialogue_id=dialogue.pk)
        return Response(_dialogue_data(dialogue), status=status.HTTP_201_CREATED)


class DialogueUpdateInputSerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="The version your edits are based on.")
    turns = DialogueTurnSerializer(many=True, max_length=TURNS_MAX)


class DialogueDetailApi(APIView):
    """Read a dialogue I may see; update or discard my own draft (others' drafts answer 404)."""

    @extend_schema(responses=DialogueOutputSerializer)
    def get(self, request, dialogue_id: int):
        return Response(_dialogue_data(dialogue_get_for_user(user=request.user, dialogue_id=dialogue_id)))

    @extend_schema(
        request=DialogueUpdateInputSerializer,
        responses={
            200: DialogueOutputSerializer,
            409: OpenApiResponse(description="Stale version or not editable."),
        },
    )
    def put(self, request, dialogue_id: int):
        dialogue = dialogue_get_own(user=request.user, dialogue_id=dialogue_id)
        serializer = DialogueUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        dialogue_update(
            dialogue=dialogue,
            author=request.user,
            turns=_turns(serializer.validated_data["turns"]),
            expected_version=serializer.validated_data["version"],
        )
        return Response(_dialogue_data(dialogue_get_own(user=request.user, dialogue_id=dialogue_id)))

    @extend_schema(
        request=DialogueUpdateInputSerializer,
        responses={
            200: DialogueOutputSerializer,
            409: OpenApiResponse(description="Stale version or not editable."),
        },
    )
    def patch(self, request, dialogue_id: int):
        return self.put(request, dialogue_id)

    @extend_schema(responses={204: None})
    def delete(self, request, dialogue_id: int):
        dialogue_discard(
            dialogue=dialogue_get_own(user=request.user, dialogue_id=dialogue_id), author=request.user
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class DialogueSubmitInputSerializer(serializers.Serializer):
    version = serializers.IntegerField(
        required=False, help_text="Refuse (409) if the dialogue changed since."
    )


class DialogueSubmitApi(APIView):
    """Send my draft (or revised dialogue) to review."""

    @extend_schema(request=DialogueSubmitInputSerializer, responses=DialogueOutputSerializer)
    def post(self, request, dialogue_id: int):
        dialogue = dialogue_get_own(user=request.user, dialogue_id=dialogue_id)
        serializer = DialogueSubmitInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        dialogue_submit(
            dialogue=dialogue, author=request.user, expected_version=serializer.validated_data.get("version")
        )
        return Response(_dialogue_data(dialogue_get_own(user=request.user, dialogue_id=dialogue_id)))


class DialogueReviewInputSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=ReviewDecision.choices)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=TURN_MAX_CHARS)


class DialogueReviewApi(APIView):
    """Accept or reject a submitted dialogue (reviewers and managers; never one's own)."""

    @extend_schema(request=DialogueReviewInputSerializer, responses=DialogueOutputSerializer)
    def post(self, request, dialogue_id: int):
        dialogue = dialogue_get_for_user(user=request.user, dialogue_id=dialogue_id)
        serializer = DialogueReviewInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        dialogue_review(dialogue=dialogue, reviewer=request.user, **serializer.validated_data)
        return Response(_dialogue_data(dialogue_get_for_user(user=request.user, dialogue_id=dialogue_id)))


class DialogueReviewQueueApi(generics.ListAPIView):
    """Submitted dialogues waiting for my review, oldest first (?project=ID for one project)."""

    serializer_class = DialogueOutputSerializer
    pagination_class = KeysetPagination  # pages by cursor: a deep page costs what the first costs

    @extend_schema(parameters=[PROJECT_PARAMETER])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return dialogue_review_queue(user=self.request.user, project_id=_project_param(self.request))


class DialogueNextPromptApi(APIView):
    """Lease the next prompt of the project's queue as a new draft (201), or get back the one I hold (200).

    Answers 204 when every prompt has enough demonstrations.
    """

    @extend_schema(
        parameters=[OpenApiParameter("project", OpenApiTypes.INT, required=True)],
        request=None,
        responses={
            200: DialogueOutputSerializer,
            201: DialogueOutputSerializer,
            204: OpenApiResponse(description="No prompt left."),
        },
    )
    def post(self, request):
        project = project_get_for_user(user=request.user, project_id=_project_param(request, required=True))
        result = prompt_lease_next(project=project, user=request.user)
        if result is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        # a new draft comes with its turns; one held from before is read as it stands now
        dialogue = result.dialogue if result.created else dialogue_get_own(user=request.user, dialogue_id=result.dialogue.pk)
        data = _dialogue_data(dialogue)
        return Response(data, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


# --- import and export -------------------------------------------------------------------------------------


class ProjectImportInputSerializer(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.ChoiceField(choices=FORMATS)
    skip_invalid = serializers.BooleanField(
        default=False, help_text="Skip bad lines and report them instead of refusing the whole file."
    )
    dialogue_status = serializers.ChoiceField(
        choices=IMPORTED_DIALOGUE_STATUSES,
        default=DialogueStatus.ACCEPTED,
        help_text="Dialogue formats: import as accepted demonstrations, or as submitted ones to review.",
    )


class ImportLinesOutputSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    lines = serializers.ListField(child=serializers.IntegerField())


class ImportSkippedLineOutputSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    reason = serializers.CharField()


class ImportSkippedOutputSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    lines = ImportSkippedLineOutputSerializer(many=True)


class ImportReportOutputSerializer(serializers.Serializer):
    format = serializers.CharField()
    kind = serializers.ChoiceField(choices=KINDS)
    rows = serializers.IntegerField()
    created = serializers.IntegerField()
    duplicates = ImportLinesOutputSerializer()
    skipped = ImportSkippedOutputSerializer()


class ProjectImportApi(APIView):
    """Import a small file of prompts or demonstrations within the request (managers): all or nothing, duplicates
    reported. Up to `RLHF_IMPORT_INLINE_MAX_BYTES` (1 MiB); a larger file is refused (413) with `import_jobs_url`:
    `POST /api/projects/{id}/import-jobs/` imports any size on the worker, with progress."""

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": ProjectImportInputSerializer},
        responses={
            201: ImportReportOutputSerializer,
            413: OpenApiResponse(description="Larger than RLHF_IMPORT_INLINE_MAX_BYTES: `import_jobs_url` takes it."),
        },
    )
    def post(self, request, project_id: int):
        project = project_get_for_user(user=request.user, project_id=project_id, role=Role.MANAGER)
        serializer = ProjectImportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        import_check_fits_request(size=serializer.validated_data["file"].size,
                                  jobs_url=f"/api/projects/{project.pk}/import-jobs/")
        report = project_import(project=project, user=request.user, **serializer.validated_data)
        return Response(report.as_dict(), status=status.HTTP_201_CREATED)


class ProjectSftExportApi(APIView):
    """Stream the project's accepted demonstrations as SFT JSONL (managers and ML engineers).

    `X-Snapshot-Time` and `X-Row-Count` name the snapshot: dialogues accepted up to that time.
    """

    def perform_content_negotiation(self, request, force=False):
        # the body is JSONL whatever the client's Accept header says; never answer 406
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        responses={
            (200, "application/jsonl"): OpenApiResponse(response=OpenApiTypes.STR, description="JSONL")
        }
    )
    def get(self, request, project_id: int):
        project = project_get_for_user(user=request.user, project_id=project_id)
        if not user_manages_project_data(user=request.user, project=project):
            raise Http404("No such project.")
        export = sft_export_prepare(project=project, exported_by=request.user)
        response = StreamingHttpResponse(jsonl_stream(export.lines()), content_type="application/jsonl; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
        response["X-Snapshot-Time"] = export.snapshot_at.isoformat()
        response["X-Row-Count"] = str(export.row_count)
        response["Cache-Control"] = "no-store"
        return response
