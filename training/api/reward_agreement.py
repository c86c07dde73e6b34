"""Reward models against fresh human rankings: agreement per model version over time, beside the labelers' own."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from training.api.common import TrainingModelRefSerializer, TrainingRunRefSerializer
from training.selectors.access import training_project_get
from training.selectors.reward_agreement import BUCKETS, reward_agreement_report


class RewardAgreementFiguresSerializer(serializers.Serializer):
    """Pairs ordered the same way out of pairs compared, over some tasks; the share and its 95 % Wilson interval."""

    tasks = serializers.IntegerField(help_text="Tasks counted.")
    pairs = serializers.IntegerField(help_text="Human preference pairs compared.")
    pairs_agreed = serializers.IntegerField(help_text="Pairs ordered the same way.")
    agreement = serializers.FloatField(source="share", allow_null=True, help_text="pairs_agreed / pairs; null without pairs.")
    low = serializers.FloatField(allow_null=True, help_text="95 % Wilson interval of the agreement, lower end.")
    high = serializers.FloatField(allow_null=True, help_text="95 % Wilson interval of the agreement, upper end.")


class RewardAgreementPointSerializer(RewardAgreementFiguresSerializer):
    start = serializers.DateField(help_text="The bucket's first day (site time zone; weeks start on Monday).")


class RewardModelAgreementSerializer(serializers.Serializer):
    """A reward model version against the fresh rankings it checked (``reward_agreement`` of GET /api/models/{id}/)."""

    total = RewardAgreementFiguresSerializer(help_text="Every check of this model: tasks, pairs, agreement.")
    mean_margin = serializers.FloatField(
        allow_null=True, help_text="Mean of chosen score − rejected score over its pairs: how sure it is, not how right."
    )
    first_task_completed_at = serializers.DateTimeField(allow_null=True)
    last_task_completed_at = serializers.DateTimeField(allow_null=True)
    last_checked_at = serializers.DateTimeField(allow_null=True)
    ceiling = RewardAgreementFiguresSerializer(
        help_text="The labelers' agreement with each other on the tasks it checked (those ranked twice or more)."
    )


class RewardModelSeriesSerializer(serializers.Serializer):
    model = TrainingModelRefSerializer()
    is_current = serializers.BooleanField(help_text="The project's current reward model: it checks new tasks.")
    total = RewardAgreementFiguresSerializer(help_text="All its checks in the period.")
    mean_margin = serializers.FloatField(allow_null=True, help_text="Mean of chosen score − rejected score.")
    points = RewardAgreementPointSerializer(many=True, help_text="Per bucket of the tasks' completion, oldest first.")


class RewardCeilingSerializer(serializers.Serializer):
    total = RewardAgreementFiguresSerializer(source="ceiling")
    points = RewardAgreementPointSerializer(many=True, source="ceiling_points", help_text="Per bucket, oldest first.")


class RewardAgreementOutputSerializer(serializers.Serializer):
    project = serializers.IntegerField(source="project.pk")
    bucket = serializers.ChoiceField(choices=BUCKETS)
    current_reward_model = TrainingModelRefSerializer(source="current_model", allow_null=True)
    pending_tasks = serializers.IntegerField(
        help_text="Completed tasks no reward model of its lineage trained on that the current one has not checked yet."
    )
    check_starts_at = serializers.IntegerField(
        help_text="A check run starts once this many tasks wait (RLHF_REWARD_CHECK_MIN_TASKS), and on promotion."
    )
    active_run = TrainingRunRefSerializer(allow_null=True, help_text="The check (score) run queued or running, if any.")
    models = RewardModelSeriesSerializer(many=True, help_text="Each reward model that checked tasks, oldest first.")
    ceiling = RewardCeilingSerializer(
        source="*", help_text="The labelers' agreement with each other on every task completed in the same buckets."
    )


FIGURES = {"tasks": 14, "pairs": 84, "pairs_agreed": 61, "agreement": 0.726, "low": 0.623, "high": 0.810}
EXAMPLE = {
    "project": 1, "bucket": "day", "current_reward_model": {"id": 12, "name": "reward-v2", "kind": "reward"},
    "pending_tasks": 6, "check_starts_at": 20, "active_run": None,
    "models": [{
        "model": {"id": 12, "name": "reward-v2", "kind": "reward"}, "is_current": True, "total": FIGURES,
        "mean_margin": 0.42, "points": [{**FIGURES, "start": "2026-11-28"}],
    }],
    "ceiling": {
        "total": {"tasks": 14, "pairs": 168, "pairs_agreed": 134, "agreement": 0.798, "low": 0.731, "high": 0.851},
        "points": [{"tasks": 14, "pairs": 168, "pairs_agreed": 134, "agreement": 0.798, "low": 0.731, "high": 0.851,
                    "start": "2026-11-28"}],
    },
}


class RewardAgreementApi(APIView):
    """How often each reward model orders fresh human preference pairs as the labelers did, over time.

    Each completed ranking task is scored by the project's current reward model before any reward model
    trains on it; a point is the share of the pairs of the tasks completed in that bucket that the
    model orders the same way as the ranking they came from, with its 95 % Wilson interval. The ceiling
    is how often one labeler's ranking orders a pair as another labeler's ranking of the same task does.
    """

    class RewardAgreementQuerySerializer(serializers.Serializer):
        bucket = serializers.ChoiceField(choices=BUCKETS, default="day", required=False)
        days = serializers.IntegerField(min_value=1, max_value=3660, required=False)

    @extend_schema(
        parameters=[
            OpenApiParameter("bucket", OpenApiTypes.STR, enum=list(BUCKETS),
                             description="Group the tasks by the day (default) or week they completed."),
            OpenApiParameter("days", OpenApiTypes.INT, description="Only tasks completed in the last N days."),
        ],
        responses=RewardAgreementOutputSerializer,
        examples=[OpenApiExample("One reward model, one day", response_only=True, value=EXAMPLE)],
    )
    def get(self, request, project_id: int):
        project = training_project_get(user=request.user, project_id=project_id)
        query = self.RewardAgreementQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        report = reward_agreement_report(
            project=project, bucket=query.validated_data.get("bucket", "day"), days=query.validated_data.get("days"),
        )
        return Response(RewardAgreementOutputSerializer(report).data)
