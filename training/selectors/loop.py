"""The loop's state, in words and numbers: each step, what it waits for, what runs now."""

from __future__ import annotations

from dataclasses import dataclass, field

from annotation.models import Dialogue, DialogueStatus, Project, Prompt
from ranking.models import Ranking, RankingTask, TaskPurpose, TaskStatus
from training.models import (
    LoopPolicy,
    ModelKind,
    ModelVersion,
    PreferenceMethod,
    Promotion,
    RunKind,
    RunState,
    SamplingJob,
    TrainingRun,
)
from training.selectors.evaluations import promotion_gate

# ---- the loop's state, in words and numbers ----------------------------------------------------------------


@dataclass
class LoopStep:
    key: str  # sft | preferences | ppo | promote | sample
    title: str
    ready: bool
    waiting_for: str  # what it waits for, in words ("37 of 50 new rankings")
    have: int | None = None
    need: int | None = None
    active_run: TrainingRun | None = None
    last_error: str = ""
    inputs: dict = field(default_factory=dict)  # what a tick would start it with

    @property
    def progress(self) -> float | None:
        if self.need:
            return min(1.0, (self.have or 0) / self.need)
        return None


@dataclass
class LoopStatus:
    policy: LoopPolicy
    steps: list[LoopStep]

    @property
    def next_step(self) -> LoopStep | None:
        ready = [step for step in self.steps if step.ready]
        if ready:
            return ready[0]
        waiting = [step for step in self.steps if step.active_run is None and step.progress is not None]
        return max(waiting, key=lambda step: step.progress, default=None)

    @property
    def summary(self) -> str:
        if not self.policy.enabled:
            return "The loop is off: runs start only by hand."
        active = [step for step in self.steps if step.active_run is not None]
        if active:
            return "; ".join(f"{step.title}: run {step.active_run.pk} is {step.active_run.state}" for step in active)
        step = self.next_step
        if step is None:
            return "Nothing to do."
        return f"Next: {step.title} — {'ready' if step.ready else step.waiting_for}."


def loop_policy_get(*, project: Project) -> LoopPolicy:
    """Return the project's loop policy, or an unsaved default one (off) if nobody set it yet: reads never write."""
    return LoopPolicy.objects.filter(project=project).select_related(
        "base_model", "current_policy", "current_reward_model"
    ).first() or LoopPolicy(project=project)


def newest_model(*, project: Project, kinds: tuple[str, ...]) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, kind__in=kinds).order_by("-id").first()


def _last_run(project: Project, kinds: list[str], **filters) -> TrainingRun | None:
    return (
        TrainingRun.objects.filter(project=project, kind__in=kinds, **filters)
        .select_related("snapshot").order_by("-id").first()
    )


def _active_loop_run(project: Project, kind: str) -> TrainingRun | None:
    runs = TrainingRun.objects.filter(project=project, kind=kind, state__in=RunState.active())
    return runs.filter(evaluation_entry__isnull=True).order_by("-id").first()  # an evaluation's runs are its own


def _failure(run: TrainingRun | None) -> str:
    if run is not None and run.state == RunState.FAILED:
        return f"run {run.pk} failed: {run.error}"
    return ""


def loop_status(*, project: Project) -> LoopStatus:
    """Say, for each step of the loop, whether it is ready, what it waits for, and what runs now.

    A finished run of a step (succeeded, failed or cancelled) uses up the labels of its snapshot, so a
    failing step is not retried in a loop: it waits for another threshold of new labels (or a person).
    """
    policy = loop_policy_get(project=project)
    sft_model = newest_model(project=project, kinds=(ModelKind.SFT,)) or policy.base_model
    steps = []

    last_sft = _last_run(project, [RunKind.SFT])
    cutoff = last_sft.snapshot.labels_until if last_sft and last_sft.snapshot else None
    demos = Dialogue.objects.filter(project=project, status=DialogueStatus.ACCEPTED)
    new_demos = (demos.filter(accepted_at__gt=cutoff) if cutoff else demos).count()
    need = policy.sft_min_new_demonstrations
    active = _active_loop_run(project, RunKind.SFT)
    blocked = "" if policy.base_model else "Choose a base model for the loop."
    steps.append(LoopStep(
        key="sft", title="SFT", have=new_demos, need=need, active_run=active, last_error=_failure(last_sft),
        ready=bool(not blocked and active is None and new_demos >= need),
        waiting_for=blocked or f"{new_demos} of {need} new accepted demonstrations",
        inputs={"input_model": policy.base_model},
    ))

    preference_kind = RunKind.DPO if policy.preference_method == PreferenceMethod.DPO else RunKind.REWARD
    last_preference = _last_run(project, [RunKind.REWARD, RunKind.DPO])
    cutoff = last_preference.snapshot.labels_until if last_preference and last_preference.snapshot else None
    rankings = Ranking.objects.filter(task__project=project, task__purpose=TaskPurpose.RANKING)  # not judgements
    new_rankings = (rankings.filter(created_at__gt=cutoff) if cutoff else rankings).count()
    need = policy.reward_min_new_rankings
    active = _active_loop_run(project, preference_kind)
    blocked = "" if sft_model else "Choose a base model for the loop."
    title = "DPO" if preference_kind == RunKind.DPO else "Reward model"
    steps.append(LoopStep(
        key="preferences", title=title, have=new_rankings, need=need, active_run=active,
        last_error=_failure(last_preference),
        ready=bool(not blocked and active is None and new_rankings >= need),
        waiting_for=blocked or f"{new_rankings} of {need} new rankings", inputs={"input_model": sft_model, "kind": preference_kind},
    ))

    if policy.preference_method == PreferenceMethod.REWARD_PPO:
        reward = policy.current_reward_model
        last_ppo = _last_run(project, [RunKind.PPO], reward_model=reward) if reward else None
        active = _active_loop_run(project, RunKind.PPO)
        if reward is None:
            waiting, ready = "a reward model (promoted as current)", False
        elif last_ppo is not None:
            waiting, ready = f"a newer reward model than {reward.name} (PPO ran on it: run {last_ppo.pk})", False
        else:
            waiting, ready = f"ready to train on {reward.name}", active is None and sft_model is not None
        steps.append(LoopStep(
            key="ppo", title="PPO", ready=ready, waiting_for=waiting, active_run=active,
            last_error=_failure(last_ppo), inputs={"input_model": sft_model, "reward_model": reward},
        ))

    steps.append(_promote_step(project=project, policy=policy))

    sampler = policy.current_policy or policy.base_model
    active = _active_loop_run(project, RunKind.SAMPLE)
    last_job = SamplingJob.objects.filter(model=sampler).select_related("run").order_by("-id").first() if sampler else None
    open_tasks = RankingTask.objects.filter(
        project=project, status=TaskStatus.OPEN, is_gold=False, purpose=TaskPurpose.RANKING
    )[: max(policy.queue_low_water, 1)].count()
    unsampled = sampler is not None and prompts_left_for(project=project, model=sampler)
    if sampler is None:
        waiting, ready = "a policy (or a base model) to sample from", False
    elif last_job is None:
        waiting, ready = f"ready to sample {sampler.name}", unsampled
        if not unsampled:
            waiting = "prompts in the queue"
    elif policy.queue_low_water and open_tasks < policy.queue_low_water and unsampled:
        waiting, ready = f"{open_tasks} open ranking tasks, below {policy.queue_low_water}: sample more", True
    else:
        waiting, ready = (
            f"the ranking queue to fall below {policy.queue_low_water} open tasks" if unsampled
            else f"new prompts ({sampler.name} answered every prompt of the queue)"
        ), False
    steps.append(LoopStep(
        key="sample", title="Sample", ready=bool(ready and active is None), waiting_for=waiting, active_run=active,
        last_error=_failure(last_job.run if last_job else None), inputs={"model": sampler},
    ))
    return LoopStatus(policy=policy, steps=steps)


def _promote_step(*, project: Project, policy: LoopPolicy) -> LoopStep:
    """The promote step; with ``min_win_rate_to_promote`` set, people judge the candidate against the model
    sampled now (the current policy, else the base model) first, and it is promoted only if it wins enough."""
    candidate = promotion_candidate(project=project, policy=policy)
    baseline = policy.current_policy or policy.base_model
    if candidate is None:
        return LoopStep(key="promote", title="Promote", ready=False, waiting_for="a new policy",
                        inputs={"model": candidate})
    if not policy.auto_promote:
        return LoopStep(key="promote", title="Promote", ready=False, waiting_for=f"a person to promote {candidate.name}",
                        inputs={"model": candidate})
    if policy.min_win_rate_to_promote is None or baseline is None:
        return LoopStep(key="promote", title="Promote", ready=True,
                        waiting_for=f"{candidate.name} is promoted automatically", inputs={"model": candidate})
    gate = promotion_gate(policy=policy, candidate=candidate, baseline=baseline)
    inputs = {"model": candidate, "reason": gate.reason}
    if gate.start_evaluation:
        inputs["evaluate_against"] = baseline  # a tick starts the evaluation; "run it now" promotes at once
    return LoopStep(
        key="promote", title="Promote", ready=gate.ready, waiting_for=gate.waiting_for, have=gate.have,
        need=gate.need, active_run=gate.active_run, last_error=gate.last_error, inputs=inputs,
    )


def promotion_candidate(*, project: Project, policy: LoopPolicy) -> ModelVersion | None:
    """The newest policy-like model trained after the current policy and never promoted, if any."""
    models = ModelVersion.objects.filter(project=project, kind__in=[ModelKind.SFT, ModelKind.POLICY], run__isnull=False)
    if policy.current_policy_id:
        models = models.filter(id__gt=policy.current_policy_id)
    promoted = Promotion.objects.filter(project=project).values("model_id")
    return models.exclude(pk__in=promoted).order_by("-id").first()


def prompts_left_for(*, project: Project, model: ModelVersion) -> bool:
    """Whether the queue holds an active prompt this model has not answered yet."""
    from django.db.models import Exists, OuterRef

    sampled = RankingTask.objects.filter(prompt=OuterRef("pk"), responses__generator=model.name)
    prompts = Prompt.objects.filter(project=project, is_active=True, held_out=False)  # held-out: evaluations only
    return prompts.exclude(Exists(sampled)).exists()

