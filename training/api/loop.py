"""A project's loop: its policy (read, change) and state (each step, what it waits for); start a step now."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Project
from training.api.common import (
    TrainingErrorOutputSerializer,
    TrainingModelRefSerializer,
    TrainingRunRefSerializer,
    in_project,
)
from training.models import ModelVersion, PreferenceMethod
from training.selectors.access import training_project_get
from training.selectors.loop import loop_status
from training.services.loop import loop_step_start_now
from training.services.loop_policy import loop_policy_update


class LoopStepOutputSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="sft | preferences | ppo | promote | sample")
    title = serializers.CharField()
    ready = serializers.BooleanField(help_text="The loop starts it on its next tick (when enabled).")
    waiting_for = serializers.CharField(help_text='In words: "37 of 50 new rankings".')
    have = serializers.IntegerField(allow_null=True)
    need = serializers.IntegerField(allow_null=True)
    progress = serializers.FloatField(allow_null=True, help_text="have / need, 0 to 1.")
    active_run = TrainingRunRefSerializer(allow_null=True)
    last_error = serializers.CharField(help_text="Why its last run failed, if it did.")


class LoopOutputSerializer(serializers.Serializer):
    project = serializers.IntegerField(source="policy.project_id")
    enabled = serializers.BooleanField(source="policy.enabled")
    base_model = TrainingModelRefSerializer(source="policy.base_model", allow_null=True)
    sft_min_new_demonstrations = serializers.IntegerField(source="policy.sft_min_new_demonstrations")
    reward_min_new_rankings = serializers.IntegerField(source="policy.reward_min_new_rankings")
    prompts_per_sampling_job = serializers.IntegerField(source="policy.prompts_per_sampling_job")
    queue_low_water = serializers.IntegerField(source="policy.queue_low_water")
    preference_method = serializers.ChoiceField(source="policy.preference_method", choices=PreferenceMethod.choices)
    auto_promote = serializers.BooleanField(source="policy.auto_promote")
    min_win_rate_to_promote = serializers.FloatField(
        source="policy.min_win_rate_to_promote", allow_null=True,
        help_text="People judge a new policy against the current one first; it is promoted automatically only if "
                  "the low end of the 95 % interval of its win rate (ties half) reaches this. Null: no evaluation.",
    )
    evaluation_prompts = serializers.IntegerField(
        source="policy.evaluation_prompts", help_text="Held-out prompts an evaluation started by the loop judges."
    )
    config_templates = serializers.JSONField(source="policy.config_templates")
    current_policy = TrainingModelRefSerializer(source="policy.current_policy", allow_null=True)
    current_reward_model = TrainingModelRefSerializer(source="policy.current_reward_model", allow_null=True)
    last_tick_at = serializers.DateTimeField(source="policy.last_tick_at", allow_null=True)
    last_tick_note = serializers.CharField(source="policy.last_tick_note", help_text="What the last tick found in the way.")
    updated_at = serializers.DateTimeField(source="policy.updated_at", allow_null=True)  # null until first saved
    summary = serializers.CharField(help_text="Where the loop stands, in words.")
    next_step = serializers.CharField(source="next_step.key", allow_null=True, help_text="The step nearest to starting.")
    steps = LoopStepOutputSerializer(many=True)


def loop_payload(project: Project) -> dict:
    return LoopOutputSerializer(loop_status(project=project)).data


STEP_EXAMPLE = {"have": None, "need": None, "progress": None, "active_run": None, "last_error": ""}
LOOP_EXAMPLE = {
    "project": 1, "enabled": True, "base_model": {"id": 7, "name": "qwen2.5-0.5b-instruct", "kind": "base"},
    "sft_min_new_demonstrations": 50, "reward_min_new_rankings": 50, "prompts_per_sampling_job": 50,
    "queue_low_water": 10, "preference_method": "reward_ppo", "auto_promote": True,
    "min_win_rate_to_promote": 0.5, "evaluation_prompts": 50,
    "config_templates": {"sft": {"num_epochs": 2}, "sample": {"max_new_tokens": 128}},
    "current_policy": {"id": 9, "name": "sft-v1", "kind": "sft"}, "current_reward_model": None,
    "last_tick_at": "2025-05-02T10:15:00Z", "last_tick_note": "", "updated_at": "2025-05-01T08:00:00Z",
    "summary": "Reward model: run 44 is running", "next_step": "sft",
    "steps": [
        {**STEP_EXAMPLE, "key": "sft", "title": "SFT", "ready": False,
         "waiting_for": "37 of 50 new accepted demonstrations", "have": 37, "need": 50, "progress": 0.74},
        {**STEP_EXAMPLE, "key": "preferences", "title": "Reward model", "ready": False,
         "waiting_for": "0 of 50 new rankings", "have": 0, "need": 50, "progress": 0.0,
         "active_run": {"id": 44, "kind": "reward", "state": "running"}},
        {**STEP_EXAMPLE, "key": "ppo", "title": "PPO", "ready": False,
         "waiting_for": "a reward model (promoted as current)"},
        {**STEP_EXAMPLE, "key": "promote", "title": "Promote", "ready": False, "waiting_for": "a new policy"},
        {**STEP_EXAMPLE, "key": "sample", "title": "Sample", "ready": False,
         "waiting_for": "the ranking queue to fall below 10 open tasks"},
    ],
}


class LoopApi(APIView):
    """A project's loop: GET its policy and state; PUT or PATCH changes the fields sent (the others stay).

    Config templates are checked per run kind with the engine's own check when saved: a bad key is a
    400 naming `config_templates.KIND.KEY`. The current policy and reward model change only by promotion.
    """

    class LoopPolicyUpdateInputSerializer(serializers.Serializer):
        enabled = serializers.BooleanField(required=False, help_text="The loop starts each step once it is ready.")
        base_model = serializers.IntegerField(
            required=False, allow_null=True, help_text="Where SFT starts; sampled before any policy exists."
        )
        sft_min_new_demonstrations = serializers.IntegerField(required=False, min_value=1)
        reward_min_new_rankings = serializers.IntegerField(required=False, min_value=1)
        prompts_per_sampling_job = serializers.IntegerField(required=False, min_value=1, max_value=100_000)
        queue_low_water = serializers.IntegerField(
            required=False, min_value=0, help_text="Sample again below this many open ranking tasks (0: never)."
        )
        preference_method = serializers.ChoiceField(required=False, choices=PreferenceMethod.choices)
        auto_promote = serializers.BooleanField(required=False)
        min_win_rate_to_promote = serializers.FloatField(
            required=False, allow_null=True, min_value=0.0, max_value=1.0,
            help_text="e.g. 0.5: promote only a policy that people judge better than the current one (null: off).",
        )
        evaluation_prompts = serializers.IntegerField(required=False, min_value=1, max_value=1000)
        config_templates = serializers.DictField(
            required=False, child=serializers.DictField(),
            help_text='Engine settings per run kind: {"sft": {"num_epochs": 2}, "sample": {"max_new_tokens": 128}}.',
        )

    @extend_schema(
        responses=LoopOutputSerializer,
        examples=[OpenApiExample("Waiting for demonstrations", response_only=True, value=LOOP_EXAMPLE)],
    )
    def get(self, request, project_id: int):
        project = training_project_get(user=request.user, project_id=project_id)
        return Response(loop_payload(project))

    @extend_schema(
        request=LoopPolicyUpdateInputSerializer,
        responses={200: LoopOutputSerializer, 400: TrainingErrorOutputSerializer},
        examples=[
            OpenApiExample("Turn the loop on, DPO instead of reward + PPO", request_only=True, value={
                "enabled": True, "base_model": 7, "preference_method": "dpo", "reward_min_new_rankings": 100,
                "config_templates": {"sft": {"num_epochs": 2}, "dpo": {"beta": 0.1}},
            }),
            OpenApiExample("A misspelt template key", response_only=True, status_codes=["400"], value={
                "detail": "config_templates.sft: unknown key 'learning_rat' (did you mean 'learning_rate'?)",
                "errors": {"config_templates.sft.learning_rat": [
                    "unknown key 'learning_rat' (did you mean 'learning_rate'?)"]},
            }),
        ],
    )
    def put(self, request, project_id: int):
        project = training_project_get(user=request.user, project_id=project_id)
        serializer = self.LoopPolicyUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        if changes.get("base_model") is not None:
            changes["base_model"] = in_project(
                ModelVersion.objects.all(), project=project, object_id=changes["base_model"], field="base_model",
                what="model",
            )
        loop_policy_update(project=project, changes=changes)
        return Response(loop_payload(project))

    @extend_schema(request=LoopPolicyUpdateInputSerializer, responses={200: LoopOutputSerializer,
                                                                     400: TrainingErrorOutputSerializer})
    def patch(self, request, project_id: int):
        return self.put(request, project_id)


class LoopStepStartApi(APIView):
    """Start one step of the loop now, whatever its threshold says ("run the next step now"): 202 with what started."""

    class LoopStepStartOutputSerializer(serializers.Serializer):
        started = serializers.CharField(help_text='In words: "sft run 12", "sampling job 3", "promoted sft-v2".')
        loop = LoopOutputSerializer(help_text="The loop's state after the start.")

    @extend_schema(
        request=None,
        responses={202: LoopStepStartOutputSerializer,
                   400: OpenApiResponse(TrainingErrorOutputSerializer,
                                        description="No such step, it is running already, or it lacks an input.")},
    )
    def post(self, request, project_id: int, key: str):
        project = training_project_get(user=request.user, project_id=project_id)
        started = loop_step_start_now(project=project, key=key, started_by=request.user)
        return Response(
            self.LoopStepStartOutputSerializer({"started": started, "loop": loop_status(project=project)}).data,
            status=status.HTTP_202_ACCEPTED,
        )
