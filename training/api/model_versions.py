"""Model versions: list, register (a folder, a GGUF file or a tiny model), read, promote."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from training.api.common import (
    TrainingErrorOutputSerializer,
    TrainingModelRefSerializer,
    TrainingRunRefSerializer,
    TrainingSnapshotRefSerializer,
    choice_filter,
    choice_parameter,
    project_filter,
    project_parameter,
)
from training.api.evaluations import ModelJudgedOutputSerializer, model_judged_payload
from training.api.reward_agreement import RewardModelAgreementSerializer
from training.api.runs import TrainingRunOutputSerializer, run_payload
from training.models import ModelKind, ModelVersion, Promotion
from training.selectors.access import model_get_for_user, training_project_get
from training.selectors.lists import current_model_ids, model_list, model_promotions
from training.selectors.reward_agreement import reward_agreement_for_model
from training.services.model_versions import (
    model_import_gguf,
    model_make_tiny,
    model_promote,
    model_register_folder,
)


class ModelPromotionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    role = serializers.ChoiceField(choices=Promotion.Role.choices)
    previous = TrainingModelRefSerializer(allow_null=True, help_text="The model that held the role before.")
    automatic = serializers.BooleanField(help_text="Made by the loop, not a person.")
    promoted_by = serializers.CharField(source="promoted_by.username", allow_null=True, default=None)
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class ModelVersionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    kind = serializers.ChoiceField(choices=ModelKind.choices)
    name = serializers.CharField()
    storage_path = serializers.CharField(help_text="The save_pretrained folder: relative to the data root, or absolute.")
    description = serializers.CharField()
    parent = TrainingModelRefSerializer(allow_null=True, help_text="The model it was trained from.")
    run = TrainingRunRefSerializer(allow_null=True, help_text="The run that produced it (none for a registered folder).")
    snapshot = TrainingSnapshotRefSerializer(allow_null=True, help_text="The labels it was trained on.")
    metrics = serializers.JSONField(help_text="The run's final figures.")
    is_current_policy = serializers.BooleanField(help_text="Sampled for new ranking tasks.")
    is_current_reward = serializers.BooleanField(help_text="The reward model PPO uses.")
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class ModelVersionDetailOutputSerializer(ModelVersionOutputSerializer):
    promotions = ModelPromotionOutputSerializer(
        many=True, source="promotions_newest_first", help_text="Each time it became current, newest first."
    )
    reward_agreement = RewardModelAgreementSerializer(
        allow_null=True, help_text="A reward model: how often it orders fresh human preference pairs (tasks it never "
        "trained on) as the labelers did, beside the labelers' own agreement on them. Null for other kinds.",
    )
    judged = ModelJudgedOutputSerializer(
        allow_null=True, help_text="What people judged in the project's evaluations (null: never evaluated)."
    )


def _with_roles(models: list[ModelVersion]) -> list[ModelVersion]:
    """Mark each model current policy / current reward model of its project (one query for the page)."""
    policies, rewards = current_model_ids(project_ids={model.project_id for model in models})
    for model in models:
        model.is_current_policy, model.is_current_reward = model.pk in policies, model.pk in rewards
    return models


def model_detail_payload(model: ModelVersion) -> dict:
    _with_roles([model])
    model.promotions_newest_first = list(model_promotions(model=model))
    model.reward_agreement = reward_agreement_for_model(model=model)
    model.judged = model_judged_payload(model)
    return ModelVersionDetailOutputSerializer(model).data


class ModelVersionListCreateApi(generics.ListAPIView):
    """List the model versions of my projects (?project=, ?kind=), or register a base model in one of three ways."""

    pagination_class = LimitOffsetPagination  # always: paginate_queryset adds what the serializer reads
    serializer_class = ModelVersionOutputSerializer

    class ModelVersionCreateInputSerializer(serializers.Serializer):
        project = serializers.IntegerField()
        name = serializers.CharField(max_length=200, help_text="Unique in the project; samples are labelled with it.")
        path = serializers.CharField(
            required=False, max_length=1000,
            help_text="A save_pretrained folder on the server (under RLHF_MODEL_IMPORT_ROOTS): registered at once, 201.",
        )
        gguf_file = serializers.CharField(
            required=False, max_length=1000,
            help_text="A .gguf file on the server (under RLHF_MODEL_IMPORT_ROOTS): converted by an import-gguf run, 202.",
        )
        tiny = serializers.DictField(
            required=False,
            help_text="Build a tiny random model (make-tiny run, 202) with these settings ({} for the defaults); "
                      "a refused setting is named config.KEY.",
        )
        kind = serializers.ChoiceField(
            choices=ModelKind.choices, default=ModelKind.BASE, help_text="With path only: what the folder holds."
        )
        description = serializers.CharField(required=False, allow_blank=True, default="")

        def validate(self, attrs):
            given = [name for name in ("path", "gguf_file", "tiny") if name in attrs]
            if len(given) != 1:
                raise serializers.ValidationError("Give exactly one of path, gguf_file or tiny.")
            if attrs["kind"] != ModelKind.BASE and given != ["path"]:
                raise serializers.ValidationError({"kind": ["Only a registered folder (path) may be of another kind."]})
            return attrs

    @extend_schema(parameters=[project_parameter(), choice_parameter("kind", ModelKind.values)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return model_list(
            user=self.request.user, project=project_filter(self.request),
            kind=choice_filter(self.request, "kind", ModelKind.values),
        )

    def paginate_queryset(self, queryset):
        return _with_roles(super().paginate_queryset(queryset))

    @extend_schema(
        request=ModelVersionCreateInputSerializer,
        responses={
            201: ModelVersionOutputSerializer,
            202: OpenApiResponse(TrainingRunOutputSerializer, description="The import-gguf or make-tiny run; the "
                                 "model appears (its output_model) when the run succeeds."),
            400: TrainingErrorOutputSerializer,
        },
        examples=[
            OpenApiExample("A folder", request_only=True,
                           value={"project": 1, "name": "qwen2.5-0.5b-instruct", "path": "/models/qwen2.5-0.5b-instruct"}),
            OpenApiExample("A GGUF file", request_only=True,
                           value={"project": 1, "name": "llama-3.2-1b", "gguf_file": "/models/llama-3.2-1b-f16.gguf"}),
            OpenApiExample("A tiny model", request_only=True,
                           value={"project": 1, "name": "tiny-base", "tiny": {"hidden_size": 64, "num_layers": 2}}),
        ],
    )
    def post(self, request):
        serializer = self.ModelVersionCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = training_project_get(user=request.user, project_id=data["project"])
        if "path" in data:
            model = model_register_folder(
                project=project, name=data["name"], path=data["path"], kind=data["kind"],
                description=data["description"], created_by=request.user,
            )
            return Response(model_detail_payload(model), status=status.HTTP_201_CREATED)
        if "gguf_file" in data:
            run = model_import_gguf(project=project, name=data["name"], gguf_file=data["gguf_file"], created_by=request.user)
        else:
            run = model_make_tiny(project=project, name=data["name"], config=data["tiny"], created_by=request.user)
        return Response(run_payload(run, user=request.user), status=status.HTTP_202_ACCEPTED)


class ModelVersionDetailApi(APIView):
    """A model version: where it lives, what it came from, its figures, whether it is current, its promotions."""

    @extend_schema(responses=ModelVersionDetailOutputSerializer)
    def get(self, request, model_id: int):
        model = model_get_for_user(user=request.user, model_id=model_id)
        return Response(model_detail_payload(model))


class ModelVersionPromoteApi(APIView):
    """Make the model the project's current policy (sampled for new tasks) or current reward model (PPO uses it)."""

    class ModelPromoteInputSerializer(serializers.Serializer):
        role = serializers.ChoiceField(
            choices=Promotion.Role.choices, required=False,
            help_text="Default: reward for a reward model, policy for any other.",
        )
        reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")

    @extend_schema(
        request=ModelPromoteInputSerializer,
        responses={200: ModelVersionDetailOutputSerializer, 400: TrainingErrorOutputSerializer},
    )
    def post(self, request, model_id: int):
        model = model_get_for_user(user=request.user, model_id=model_id)
        serializer = self.ModelPromoteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        model_promote(model=model, role=data.get("role"), promoted_by=request.user, reason=data["reason"])
        return Response(model_detail_payload(model))
