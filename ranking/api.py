"""REST API for ranking: tasks, leasing, rankings, imports, exports, stats and quality. One class per operation."""

from __future__ import annotations

from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response as ApiResponse
from rest_framework.views import APIView

from annotation.models import Prompt, Role
from annotation.selectors import project_get_for_user, user_has_role, user_manages_project_data
from annotation.services.exports import jsonl_stream
from annotation.services.import_jobs import import_check_fits_request
from config.exceptions import ApplicationError
from config.pagination import KEYSET_PARAMETERS, KeysetPagination, keyset_page_schema
from ranking.models import MESSAGE_ROLES, SCORE_MAX, SCORE_MIN, RankingTask, TaskPurpose, TaskStatus
from ranking.selectors import (
    LabelerFigures,
    labeler_stats,
    lease_get,
    leases_by_task,
    project_ranking_quality,
    ranking_get,
    ranking_task_get_for_user,
    ranking_task_list,
    rankings_by_task,
    responses_in_shown_order,
    user_sees_task_internals,
)
from ranking.services.exports import PAIR_MODES, PAIRS_LABELER, preference_export_prepare
from ranking.services.imports import FORMATS, ranking_tasks_import
from ranking.services.leasing import ranking_task_lease_next, ranking_task_skip
from ranking.services.rankings import ranking_submit
from ranking.services.tasks import (
    ResponseSpec,
    ranking_task_create,
    ranking_task_gold_set,
    response_author_resolve,
)

# ---- serializers (names are unique project-wide: drf-spectacular names components by class) ----


class RankingMessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=MESSAGE_ROLES)
    content = serializers.CharField(trim_whitespace=False)


class RankingResponseCreateInputSerializer(serializers.Serializer):
    content = serializers.CharField(trim_whitespace=False)
    generator = serializers.CharField(
        required=False, allow_blank=True, max_length=200, default="",
        help_text='Model that produced the answer, or "human" when you wrote it ("human:USERNAME" for someone else).',
    )


class RankingTaskCreateInputSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    prompt = serializers.IntegerField(
        required=False, allow_null=True, help_text="A queue prompt of the project the answers were sampled for."
    )
    context = RankingMessageSerializer(
        many=True, allow_empty=False, required=False,
        help_text="The conversation, ending on a user turn. Defaults to the prompt's text when `prompt` is given.",
    )
    responses = RankingResponseCreateInputSerializer(many=True, allow_empty=False)

    def validate(self, attrs):
        if not attrs.get("context") and not attrs.get("prompt"):
            raise serializers.ValidationError({"context": "Give the conversation context (or a prompt)."})
        return attrs
    is_gold = serializers.BooleanField(default=False)
    gold_order = serializers.JSONField(
        required=False, allow_null=True,
        help_text="Gold tasks: the known ranking as groups of answer positions (0-based, as given), best first.",
    )


class RankingTaskResponseOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    content = serializers.CharField()
    generator = serializers.CharField(required=False, help_text="Shown to reviewers, managers and ML engineers only.")


class RankingOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    task = serializers.IntegerField(source="task_id")
    labeler = serializers.CharField(source="labeler.username", allow_null=True, default=None)
    is_imported = serializers.BooleanField()
    order = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()))
    flags = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    scores = serializers.DictField(child=serializers.IntegerField())
    all_bad = serializers.BooleanField()
    time_spent_ms = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class RankingTaskOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField()
    prompt = serializers.IntegerField(allow_null=True)
    status = serializers.ChoiceField(choices=TaskStatus.choices)
    purpose = serializers.ChoiceField(
        choices=TaskPurpose.choices,
        help_text="evaluation: judge it [[best], [the others…]] or [[all answers]] (a tie); it never trains a model.",
    )
    context = RankingMessageSerializer(many=True)
    responses = RankingTaskResponseOutputSerializer(many=True, help_text="In the order shown to you.")
    rankings_required = serializers.IntegerField()
    lease_expires_at = serializers.DateTimeField(allow_null=True)
    my_ranking = RankingOutputSerializer(allow_null=True)
    # reviewers and up, and ML engineers:
    source = serializers.CharField(required=False)
    is_gold = serializers.BooleanField(required=False)
    gold_order = serializers.JSONField(required=False, allow_null=True)
    consensus_order = serializers.JSONField(required=False, allow_null=True, help_text="Set once the task is complete.")
    agreement = serializers.FloatField(required=False, allow_null=True)
    ranking_count = serializers.IntegerField(required=False)
    rankings = RankingOutputSerializer(many=True, required=False)
    created_at = serializers.DateTimeField(required=False)


def ranking_task_payload(*, task: RankingTask, user, listing: dict | None = None) -> dict:
    """Describe ``task`` as ``user`` may see it: labelers don't see generators, gold or others' rankings.

    ``listing`` carries what a list page read once for all its tasks (see ``ranking_task_payloads``).
    """
    return _serialized([_task_fields(task=task, user=user, listing=listing)])[0]


def _serialized(payloads: list[dict]) -> list[dict]:
    # one serializer for the whole page: DRF deep-copies a serializer's fields per instance, which
    # cost more than everything else on a page of 50 tasks
    rows = RankingTaskOutputSerializer(payloads, many=True).data
    return [
        {key: value for key, value in row.items() if key in payload}
        for row, payload in zip(rows, payloads, strict=True)
    ]


def _task_fields(*, task: RankingTask, user, listing: dict | None) -> dict:
    if listing is None:
        internals = user_sees_task_internals(user=user, project=task.project)
        lease = lease_get(task=task, labeler=user)
        mine = ranking_get(task=task, labeler=user)
    else:
        internals = listing["internals"]
        lease, mine = listing["leases"].get(task.pk), listing["mine"].get(task.pk)
    responses = []
    for response in responses_in_shown_order(task=task, labeler=user):
        row = {"id": response.pk, "content": response.content}
        if internals:
            row["generator"] = response.generator
        responses.append(row)
    payload = {
        "id": task.pk,
        "project": task.project_id,
        "prompt": task.prompt_id,
        "status": task.status,
        "purpose": task.purpose,
        "context": task.context,
        "responses": responses,
        "rankings_required": task.project.rankings_per_task,
        "lease_expires_at": lease.expires_at if lease else None,
        "my_ranking": mine,
    }
    if internals:
        if listing is None:
            rankings = list(task.rankings.select_related("labeler").order_by("pk"))
        else:
            rankings = list(task.rankings.all())  # prefetched by ranking_task_list
        payload.update(
            source=task.source,
            is_gold=task.is_gold,
            gold_order=task.gold_order,
            consensus_order=task.consensus_order,
            agreement=task.agreement,
            ranking_count=len(rankings),
            rankings=rankings,
            created_at=task.created_at,
        )
    return payload


def ranking_task_payloads(*, tasks: list[RankingTask], user, project) -> list[dict]:
    """Describe a page of ``project``'s tasks with a fixed number of queries, whatever its length."""
    task_ids = [task.pk for task in tasks]
    listing = {
        "internals": user_sees_task_internals(user=user, project=project),
        "leases": leases_by_task(task_ids=task_ids, labeler=user),
        "mine": rankings_by_task(task_ids=task_ids, labeler=user),
    }
    return _serialized([_task_fields(task=task, user=user, listing=listing) for task in tasks])


def _project_id_param(request) -> str:
    """Return ``?project=ID`` as sent (an id that can't exist is 404 later), or answer 400 when it is missing."""
    raw = request.query_params.get("project")
    if raw in (None, ""):
        raise ApplicationError("Give the project id: ?project=ID.")
    return raw


def _require_manager_or_ml_engineer(*, user, project) -> None:
    if not user_manages_project_data(user=user, project=project):
        raise Http404("No such project.")  # a role too low answers like a foreign project


# ---- tasks ----


class RankingTaskCollectionApi(APIView):
    """GET: list a project's tasks (reviewers and up, ML engineers). POST: create a task with its K answers
    (managers and ML engineers of the project)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("project", int, required=True),
            OpenApiParameter("status", str, enum=TaskStatus.values),
            OpenApiParameter("is_gold", bool),
            *KEYSET_PARAMETERS,
        ],
        responses=keyset_page_schema(RankingTaskOutputSerializer, name="PaginatedRankingTaskList"),
        operation_id="ranking_tasks_list",
    )
    def get(self, request):
        project = project_get_for_user(user=request.user, project_id=_project_id_param(request))
        if not user_sees_task_internals(user=request.user, project=project):
            raise Http404("No such project.")  # a role too low answers like a foreign project
        is_gold = request.query_params.get("is_gold")
        tasks = ranking_task_list(
            project=project,
            status=request.query_params.get("status") or None,
            is_gold=None if is_gold in (None, "") else is_gold.lower() in ("1", "true", "yes"),
        )
        paginator = KeysetPagination()
        page = paginator.paginate_queryset(tasks, request, view=self)
        return paginator.get_paginated_response(
            ranking_task_payloads(tasks=page, user=request.user, project=project)
        )

    @extend_schema(request=RankingTaskCreateInputSerializer, responses={201: RankingTaskOutputSerializer})
    def post(self, request):
        serializer = RankingTaskCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = project_get_for_user(user=request.user, project_id=data["project"])
        _require_manager_or_ml_engineer(user=request.user, project=project)
        specs = [
            ResponseSpec(
                content=r["content"],
                generator=r["generator"],
                author=response_author_resolve(generator=r["generator"], creator=request.user),
            )
            for r in data["responses"]
        ]
        prompt = None
        if data.get("prompt") is not None:
            prompt = Prompt.objects.filter(pk=data["prompt"], project=project).first()
            if prompt is None:
                raise ApplicationError(f"prompt: no prompt {data['prompt']} in this project.")
        task = ranking_task_create(
            project=project,
            prompt=prompt,
            context=[dict(message) for message in data.get("context") or []],
            responses=specs,
            is_gold=data["is_gold"] or data.get("gold_order") is not None,
            gold_positions=data.get("gold_order"),
            created_by=request.user,
        )
        return ApiResponse(ranking_task_payload(task=task, user=request.user), status=status.HTTP_201_CREATED)


class RankingTaskDetailApi(APIView):
    """One ranking task, its answers in the order shown to me; its consensus once complete (reviewers and up)."""

    @extend_schema(responses=RankingTaskOutputSerializer)
    def get(self, request, task_id: int):
        task = ranking_task_get_for_user(user=request.user, task_id=task_id)
        return ApiResponse(ranking_task_payload(task=task, user=request.user))


class RankingTaskNextApi(APIView):
    """Lease my next task of the project (the same one again while my lease lives); 204 when none is left."""

    @extend_schema(
        request=None,
        parameters=[OpenApiParameter("project", int, required=True)],
        responses={200: RankingTaskOutputSerializer, 204: OpenApiResponse(description="No task left for you.")},
    )
    def post(self, request):
        project = project_get_for_user(user=request.user, project_id=_project_id_param(request))
        lease = ranking_task_lease_next(project=project, labeler=request.user)
        if lease is None:
            return ApiResponse(status=status.HTTP_204_NO_CONTENT)
        task = lease.task
        task.project = project
        # what the payload would read again is known here: my lease, and no ranking of mine (a leased
        # task is one I haven't ranked)
        listing = {
            "internals": user_sees_task_internals(user=request.user, project=project),
            "leases": {task.pk: lease},
            "mine": {},
        }
        if listing["internals"]:
            listing = None  # reviewers see every ranking of the task: the payload reads them itself
        return ApiResponse(ranking_task_payload(task=task, user=request.user, listing=listing))


class RankingTaskSkipApi(APIView):
    """Skip a task: my lease is released and the task is never served to me again."""

    class RankingSkipInputSerializer(serializers.Serializer):
        reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")

    @extend_schema(request=RankingSkipInputSerializer, responses={204: OpenApiResponse(description="Skipped.")})
    def post(self, request, task_id: int):
        task = ranking_task_get_for_user(user=request.user, task_id=task_id)
        serializer = self.RankingSkipInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ranking_task_skip(task=task, labeler=request.user, reason=serializer.validated_data["reason"])
        return ApiResponse(status=status.HTTP_204_NO_CONTENT)


class RankingSubmitApi(APIView):
    """Submit my ranking of a task. Send an `Idempotency-Key` header: a retry then returns the first result."""

    class RankingSubmitInputSerializer(serializers.Serializer):
        order = serializers.JSONField(help_text="Groups of response ids, best first: [[a], [b, c], [d]] (b, c tie).")
        flags = serializers.JSONField(required=False, help_text="{response_id: [flag, …]}")
        scores = serializers.JSONField(required=False, help_text=f"{{response_id: {SCORE_MIN}..{SCORE_MAX}}}")
        all_bad = serializers.BooleanField(default=False)
        time_spent_ms = serializers.IntegerField(default=0, min_value=0)

    @extend_schema(
        request=RankingSubmitInputSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", str, location=OpenApiParameter.HEADER)],
        responses={201: RankingOutputSerializer},
    )
    def post(self, request, task_id: int):
        task = ranking_task_get_for_user(user=request.user, task_id=task_id)
        serializer = self.RankingSubmitInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = ranking_submit(
            task=task,
            labeler=request.user,
            order=data["order"],
            flags=data.get("flags"),
            scores=data.get("scores"),
            all_bad=data["all_bad"],
            time_spent_ms=data["time_spent_ms"],
            idempotency_key=request.headers.get("Idempotency-Key", ""),
        )
        response = ApiResponse(RankingOutputSerializer(result.ranking).data, status=status.HTTP_201_CREATED)
        if not result.created:
            response["Idempotent-Replayed"] = "true"
        return response


class RankingTaskGoldApi(APIView):
    """Make a task gold with its known ranking (response ids), or ordinary again with `order: null` (managers)."""

    class RankingGoldInputSerializer(serializers.Serializer):
        order = serializers.JSONField(allow_null=True)

    @extend_schema(request=RankingGoldInputSerializer, responses=RankingTaskOutputSerializer)
    def post(self, request, task_id: int):
        task = ranking_task_get_for_user(user=request.user, task_id=task_id)
        if not user_has_role(user=request.user, project=task.project, role=Role.MANAGER):
            raise Http404("No such project.")  # a role too low answers like a foreign project
        serializer = self.RankingGoldInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task = ranking_task_gold_set(task=task, order=serializer.validated_data["order"])
        return ApiResponse(ranking_task_payload(task=task, user=request.user))


# ---- import / export ----


class RankingImportDuplicatesSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    lines = serializers.ListField(child=serializers.IntegerField(), help_text="The first 100 line numbers.")


class RankingImportSkippedLineSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    reason = serializers.CharField()


class RankingImportSkippedSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    lines = RankingImportSkippedLineSerializer(many=True, help_text="The first 100 lines.")


class RankingTaskImportApi(APIView):
    """Import a small JSONL file of ranking tasks (`ranking-jsonl` or `hh-rlhf`) within the request: all or nothing
    unless `skip_invalid`, duplicates skipped (managers). Up to `RLHF_IMPORT_INLINE_MAX_BYTES` (1 MiB); a larger file
    is refused (413) with `import_jobs_url`: `POST /api/projects/{id}/ranking-imports/` imports any size on the
    worker, with progress."""

    parser_classes = [MultiPartParser, FormParser]

    class RankingImportInputSerializer(serializers.Serializer):
        project = serializers.IntegerField()
        file = serializers.FileField()
        format = serializers.ChoiceField(choices=FORMATS)
        skip_invalid = serializers.BooleanField(
            default=False, help_text="Skip bad lines and report them instead of refusing the whole file."
        )

    class RankingImportOutputSerializer(serializers.Serializer):
        format = serializers.CharField()
        tasks_created = serializers.IntegerField()
        rankings_imported = serializers.IntegerField()
        skipped_lines = serializers.ListField(child=serializers.DictField())
        duplicates = RankingImportDuplicatesSerializer(
            help_text="Tasks already in the project, or repeated in the file: skipped."
        )
        skipped_invalid = RankingImportSkippedSerializer(
            help_text="Lines that could not be imported, with why: skipped (skip_invalid only; else the file is refused)."
        )
        task_ids = serializers.ListField(child=serializers.IntegerField())

    @extend_schema(request={"multipart/form-data": RankingImportInputSerializer},
                   responses={201: RankingImportOutputSerializer,
                              413: OpenApiResponse(description="Larger than RLHF_IMPORT_INLINE_MAX_BYTES: "
                                                               "`import_jobs_url` takes it.")})
    def post(self, request):
        serializer = self.RankingImportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = project_get_for_user(user=request.user, project_id=data["project"])
        if not user_has_role(user=request.user, project=project, role=Role.MANAGER):
            raise Http404("No such project.")  # a role too low answers like a foreign project
        upload = data["file"]
        import_check_fits_request(size=upload.size, jobs_url=f"/api/projects/{project.pk}/ranking-imports/")
        report = ranking_tasks_import(
            project=project, file=upload, format=data["format"], created_by=request.user, size=upload.size,
            skip_invalid=data["skip_invalid"],
        )
        return ApiResponse(self.RankingImportOutputSerializer(report).data, status=status.HTTP_201_CREATED)


def _export_options(request) -> tuple[str, bool]:
    pairs = request.query_params.get("pairs", PAIRS_LABELER)
    if pairs not in PAIR_MODES:
        raise ApplicationError(f"pairs must be one of {', '.join(PAIR_MODES)}; got {pairs!r}.")
    include_all_bad = request.query_params.get("include_all_bad", "1").lower() not in ("0", "false", "no")
    return pairs, include_all_bad


_EXPORT_PARAMETERS = [
    OpenApiParameter("pairs", str, enum=PAIR_MODES, description="labeler (default): every ranking's pairs; "
                     "consensus: one ordering per task (gold ranking for gold tasks)."),
    OpenApiParameter("include_all_bad", bool, description="Keep rankings marked 'all answers are bad' (default true)."),
]


class PreferenceExportApi(APIView):
    """Stream preference pairs as JSONL in TRL's conversational format, plus `margin` and `group`."""

    @extend_schema(parameters=_EXPORT_PARAMETERS, responses={(200, "application/jsonl"): OpenApiTypes.STR})
    def get(self, request, project_id: int):
        project = project_get_for_user(user=request.user, project_id=project_id)
        _require_manager_or_ml_engineer(user=request.user, project=project)
        pairs, include_all_bad = _export_options(request)
        lines = preference_export_prepare(project=project, format="preferences", pairs=pairs,
                                          include_all_bad=include_all_bad, exported_by=request.user)
        return _stream(lines, filename=f"{project.slug}-preferences-{pairs}.jsonl")


class HhRlhfExportApi(APIView):
    """Stream the same pairs as HH-RLHF lines: {"chosen": transcript, "rejected": transcript}."""

    @extend_schema(parameters=_EXPORT_PARAMETERS, responses={(200, "application/jsonl"): OpenApiTypes.STR})
    def get(self, request, project_id: int):
        project = project_get_for_user(user=request.user, project_id=project_id)
        _require_manager_or_ml_engineer(user=request.user, project=project)
        pairs, include_all_bad = _export_options(request)
        lines = preference_export_prepare(project=project, format="hh-rlhf", pairs=pairs,
                                          include_all_bad=include_all_bad, exported_by=request.user)
        return _stream(lines, filename=f"{project.slug}-hh-rlhf-{pairs}.jsonl")


def _stream(lines, *, filename: str) -> StreamingHttpResponse:
    # in blocks of about 64 KB; a failure half-way ends the body with an {"export_error": …} line
    response = StreamingHttpResponse(jsonl_stream(lines), content_type="application/jsonl; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# ---- stats and quality ----


class LabelerFiguresOutputSerializer(serializers.Serializer):
    labeler_id = serializers.IntegerField()
    username = serializers.CharField()
    ranked = serializers.IntegerField()
    ranked_today = serializers.IntegerField()
    skipped = serializers.IntegerField()
    agreement = serializers.FloatField(
        allow_null=True, help_text="Mean Kendall tau-b with the consensus of the other labelers (complete tasks)."
    )
    agreement_tasks = serializers.IntegerField()
    agreement_check = serializers.ChoiceField(
        choices=["low", "ok", "not enough data"],
        allow_null=True,
        help_text="low: agreement below half the other labelers' mean with 95 % confidence (closer to chance than "
        "to the team); not enough data: too few complete tasks to tell; null: no complete task yet.",
    )
    gold_accuracy = serializers.FloatField(allow_null=True, help_text="Share of gold preferences ordered the same way.")
    gold_tasks = serializers.IntegerField()
    median_time_ms = serializers.FloatField(allow_null=True)
    all_bad_share = serializers.FloatField(allow_null=True)
    warnings = serializers.ListField(child=serializers.CharField())


class RankingStatsMeApi(APIView):
    """My ranking figures in a project: tasks ranked, agreement with consensus, gold accuracy, time."""

    @extend_schema(responses=LabelerFiguresOutputSerializer)
    def get(self, request, project_id: int):
        project = project_get_for_user(user=request.user, project_id=project_id)
        figures: LabelerFigures = labeler_stats(project=project, labeler=request.user)
        return ApiResponse(LabelerFiguresOutputSerializer(figures).data)


class RankingQualityApi(APIView):
    """The project's ranking quality: labelers' figures, Krippendorff's alpha, the most disputed tasks (managers)."""

    class RankingDisputedTaskOutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        agreement = serializers.FloatField()
        ranking_count = serializers.IntegerField()
        prompt_preview = serializers.CharField()

    class RankingFlagCountOutputSerializer(serializers.Serializer):
        flag = serializers.CharField()
        label = serializers.CharField()
        count = serializers.IntegerField()

    class RankingQualityOutputSerializer(serializers.Serializer):
        alpha = serializers.FloatField(allow_null=True, help_text="Krippendorff's alpha, ordinal (fractional ranks).")
        mean_task_agreement = serializers.FloatField(allow_null=True)
        rankings = serializers.IntegerField()
        counts = serializers.DictField(
            child=serializers.IntegerField(),
            help_text="Tasks: total, open, complete, gold, disabled; estimated is 1 when total and open are "
            "PostgreSQL's estimate (more than 20,000 tasks; count_is_estimate in lists), 0 when exact.",
        )
        labelers = LabelerFiguresOutputSerializer(many=True)
        disagreements = serializers.ListField(child=serializers.DictField())
        flags = serializers.ListField(child=serializers.DictField())

    @extend_schema(responses=RankingQualityOutputSerializer)
    def get(self, request, project_id: int):
        project = project_get_for_user(user=request.user, project_id=project_id)
        if not user_has_role(user=request.user, project=project, role=Role.MANAGER):
            raise Http404("No such project.")  # a role too low answers like a foreign project
        quality = project_ranking_quality(project=project)
        return ApiResponse(
            {
                "alpha": quality.alpha,
                "mean_task_agreement": quality.mean_task_agreement,
                "rankings": quality.rankings,
                "counts": quality.counts,
                "labelers": LabelerFiguresOutputSerializer(quality.labelers, many=True).data,
                "disagreements": self.RankingDisputedTaskOutputSerializer(quality.disagreements, many=True).data,
                "flags": [
                    self.RankingFlagCountOutputSerializer({"flag": f, "label": label, "count": n}).data
                    for f, label, n in quality.flags
                ],
            }
        )

