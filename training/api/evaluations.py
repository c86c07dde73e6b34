"""Evaluations: model versions answer the same held-out prompts, people pick the better answer or a tie."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from training.api.common import (
    TrainingErrorOutputSerializer,
    TrainingModelRefSerializer,
    TrainingRunRefSerializer,
    in_project,
    project_filter,
    project_parameter,
)
from training.models import Evaluation, EvaluationState, ModelVersion, RunTrigger
from training.selectors.access import training_project_get
from training.selectors.evaluations import (
    JudgedResults,
    PairResult,
    evaluation_get_for_user,
    evaluation_list,
    evaluation_progress,
    evaluation_results,
    project_evaluation_results,
)
from training.services.evaluations import MAX_MODELS, MAX_PROMPTS, MIN_MODELS, evaluation_start
from training.services.ratings import Rating


class EvaluationPairOutputSerializer(serializers.Serializer):
    model_a = TrainingModelRefSerializer()
    model_b = TrainingModelRefSerializer()
    wins_a = serializers.IntegerField(help_text="Judgements that picked a's answer over b's.")
    wins_b = serializers.IntegerField()
    ties = serializers.IntegerField()
    judgements = serializers.IntegerField()
    win_rate = serializers.FloatField(allow_null=True, help_text="a's win rate over b: (wins_a + ties / 2) / judgements.")
    ci_low = serializers.FloatField(allow_null=True, help_text="The 95 % Wilson interval of win_rate.")
    ci_high = serializers.FloatField(allow_null=True)


class EvaluationRatingOutputSerializer(serializers.Serializer):
    model = TrainingModelRefSerializer()
    rating = serializers.FloatField(help_text="Bradley–Terry strength on the Elo scale (1000 = the group's mean).")
    ci_low = serializers.FloatField(allow_null=True, help_text="95 % bootstrap interval over prompts.")
    ci_high = serializers.FloatField(allow_null=True)
    judgements = serializers.IntegerField(help_text="Pairwise judgements it took part in.")
    group = serializers.IntegerField(help_text="Ratings compare only within a group of models judged against each other.")


class ModelJudgedOutputSerializer(serializers.Serializer):
    rating = serializers.FloatField(help_text="Over every evaluation of the project, Elo-scaled Bradley–Terry.")
    ci_low = serializers.FloatField(allow_null=True, help_text="95 % bootstrap interval over prompts.")
    ci_high = serializers.FloatField(allow_null=True)
    judgements = serializers.IntegerField()
    group = serializers.IntegerField(help_text="Ratings compare only within a group of models judged against each other.")
    opponents = EvaluationPairOutputSerializer(many=True, help_text="Its record against each model (it is model_a).")


def model_judged_payload(model: ModelVersion) -> dict | None:
    """The model's rating and its record against each model people judged it with, or None if never judged."""
    results = project_evaluation_results(project=model.project)
    rating = results.rating_of(model)
    if rating is None:
        return None
    return {**rating_payload(model, rating), "opponents": [pair_payload(pair) for pair in results.opponents_of(model)]}


class EvaluationResultsOutputSerializer(serializers.Serializer):
    pairs = EvaluationPairOutputSerializer(many=True)
    ratings = EvaluationRatingOutputSerializer(many=True, help_text="Best first.")


class EvaluationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField()
    models = TrainingModelRefSerializer(many=True, help_text="In the order given (labelers see answers shuffled).")
    runs = TrainingRunRefSerializer(many=True, help_text="The sample run of each model, in the same order.")
    state = serializers.ChoiceField(choices=EvaluationState.choices)
    error = serializers.CharField()
    prompts = serializers.IntegerField(help_text="Held-out prompts judged.")
    tasks_created = serializers.IntegerField()
    prompts_skipped = serializers.IntegerField(help_text="Prompts some model gave no answer to.")
    tasks_open = serializers.IntegerField()
    judgements = serializers.IntegerField(help_text="Judgements made so far.")
    judgements_needed = serializers.IntegerField(help_text="Tasks × the project's rankings per task.")
    trigger = serializers.ChoiceField(choices=RunTrigger.choices)
    created_by = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    ingested_at = serializers.DateTimeField(allow_null=True, help_text="When the answers became tasks.")


class EvaluationDetailOutputSerializer(EvaluationOutputSerializer):
    results = EvaluationResultsOutputSerializer(help_text="So far: final once the state is complete.")


def _model_ref(model: ModelVersion) -> dict:
    return {"id": model.pk, "name": model.name, "kind": model.kind}


def pair_payload(pair: PairResult) -> dict:
    return {
        "model_a": _model_ref(pair.model_a), "model_b": _model_ref(pair.model_b), "wins_a": pair.wins_a,
        "wins_b": pair.wins_b, "ties": pair.ties, "judgements": pair.judgements, "win_rate": pair.win_rate,
        "ci_low": pair.low, "ci_high": pair.high,
    }


def rating_payload(model: ModelVersion, rating: Rating) -> dict:
    return {"model": _model_ref(model), "rating": rating.rating, "ci_low": rating.low, "ci_high": rating.high,
            "judgements": rating.judgements, "group": rating.group}


def results_payload(results: JudgedResults) -> dict:
    return {"pairs": [pair_payload(pair) for pair in results.pairs],
            "ratings": [rating_payload(item.model, item.rating) for item in results.ratings]}


def evaluation_payload(evaluation: Evaluation, *, detail: bool = False) -> dict:
    entries = list(evaluation.entries.all())
    progress = evaluation_progress(evaluation=evaluation)
    payload = {
        "id": evaluation.pk, "project": evaluation.project_id,
        "models": [_model_ref(entry.model) for entry in entries],
        "runs": [{"id": entry.run.pk, "kind": entry.run.kind, "state": entry.run.state} for entry in entries],
        "state": progress.state, "error": progress.error, "prompts": evaluation.prompt_count,
        "tasks_created": evaluation.tasks_created, "prompts_skipped": evaluation.prompts_skipped,
        "tasks_open": progress.tasks_open, "judgements": progress.judgements,
        "judgements_needed": progress.judgements_needed, "trigger": evaluation.trigger,
        "created_by": evaluation.created_by.username if evaluation.created_by else None,
        "created_at": evaluation.created_at, "ingested_at": evaluation.ingested_at,
    }
    if detail:
        payload["results"] = results_payload(evaluation_results(evaluation=evaluation))
        return EvaluationDetailOutputSerializer(payload).data
    return EvaluationOutputSerializer(payload).data


RESULT_EXAMPLE = {
    "pairs": [{"model_a": {"id": 12, "name": "ppo-v3", "kind": "policy"},
               "model_b": {"id": 9, "name": "sft-v2", "kind": "sft"}, "wins_a": 71, "wins_b": 40, "ties": 39,
               "judgements": 150, "win_rate": 0.603, "ci_low": 0.524, "ci_high": 0.678}],
    "ratings": [
        {"model": {"id": 12, "name": "ppo-v3", "kind": "policy"}, "rating": 1036.3, "ci_low": 1008.1,
         "ci_high": 1063.0, "judgements": 150, "group": 0},
        {"model": {"id": 9, "name": "sft-v2", "kind": "sft"}, "rating": 963.7, "ci_low": 937.0,
         "ci_high": 991.9, "judgements": 150, "group": 0},
    ],
}


class EvaluationListCreateApi(generics.ListAPIView):
    """List the evaluations of my projects (?project=), or start one (202): the models answer held-out prompts."""

    class EvaluationCreateInputSerializer(serializers.Serializer):
        project = serializers.IntegerField()
        models = serializers.ListField(
            child=serializers.IntegerField(), min_length=MIN_MODELS, max_length=MAX_MODELS,
            help_text="Base, SFT or policy models of the project; each answers every prompt once.",
        )
        num_prompts = serializers.IntegerField(
            min_value=1, max_value=MAX_PROMPTS,
            help_text="Held-out prompts to judge on: those held out already first, then fresh prompts (no "
                      "demonstration, never sampled) are held out from now on; fewer when the project has no more.",
        )
        config = serializers.DictField(
            required=False, allow_null=True, help_text="Sampling settings for every model (max_new_tokens, temperature…).",
        )

    serializer_class = EvaluationOutputSerializer

    @extend_schema(parameters=[project_parameter()])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return evaluation_list(user=self.request.user, project=project_filter(self.request))

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([evaluation_payload(evaluation) for evaluation in page])

    @extend_schema(
        request=EvaluationCreateInputSerializer,
        responses={202: EvaluationOutputSerializer, 400: TrainingErrorOutputSerializer},
        examples=[OpenApiExample("The new policy against the current one", request_only=True, value={
            "project": 1, "models": [12, 9], "num_prompts": 50, "config": {"max_new_tokens": 256},
        })],
    )
    def post(self, request):
        serializer = self.EvaluationCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = training_project_get(user=request.user, project_id=data["project"])
        models = [in_project(ModelVersion.objects.all(), project=project, object_id=pk, field="models", what="model")
                  for pk in data["models"]]
        evaluation = evaluation_start(
            project=project, models=models, num_prompts=data["num_prompts"], config_overrides=data.get("config"),
            created_by=request.user,
        )
        evaluation = evaluation_get_for_user(user=request.user, evaluation_id=evaluation.pk)
        return Response(evaluation_payload(evaluation), status=status.HTTP_202_ACCEPTED)


class EvaluationDetailApi(APIView):
    """An evaluation: where it stands, and what people judged so far (win rates with 95 % intervals, ratings)."""

    @extend_schema(
        responses=EvaluationDetailOutputSerializer,
        examples=[OpenApiExample("Complete", response_only=True, value={
            "id": 4, "project": 1,
            "models": [{"id": 12, "name": "ppo-v3", "kind": "policy"}, {"id": 9, "name": "sft-v2", "kind": "sft"}],
            "runs": [{"id": 40, "kind": "sample", "state": "succeeded"}, {"id": 41, "kind": "sample", "state": "succeeded"}],
            "state": "complete", "error": "", "prompts": 50, "tasks_created": 50, "prompts_skipped": 0,
            "tasks_open": 0, "judgements": 150, "judgements_needed": 150, "trigger": "loop", "created_by": None,
            "created_at": "2025-05-02T10:00:00Z", "ingested_at": "2025-05-02T10:04:00Z", "results": RESULT_EXAMPLE,
        })],
    )
    def get(self, request, evaluation_id: int):
        evaluation = evaluation_get_for_user(user=request.user, evaluation_id=evaluation_id)
        return Response(evaluation_payload(evaluation, detail=True))
