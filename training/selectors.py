"""Reads of the training app: who may see what, runs, models and their lineage, the loop's state, workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from annotation.models import Dialogue, DialogueStatus, Project, Prompt
from annotation.selectors import user_manages_project_data
from config.ids import parse_object_id
from ranking.models import Ranking, RankingTask, TaskPurpose, TaskStatus
from training.models import (
    DatasetSnapshot,
    GpuWorker,
    LoopPolicy,
    MetricPoint,
    ModelKind,
    ModelVersion,
    PreferenceMethod,
    Promotion,
    RunKind,
    RunState,
    SamplingJob,
    TrainingRun,
)
from training.selectors_evaluations import promotion_gate

# ---- who may see what: managers of the project and ML engineers who belong to it; others get 404 ----


def projects_for_training(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Return the projects whose training side ``user`` may see and drive."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.has_perm("annotation.use_training_api"):
        return Project.objects.filter(memberships__user=user).distinct()
    return Project.objects.filter(memberships__user=user, memberships__role="manager").distinct()


def training_project_get(*, user: AbstractBaseUser, project_id) -> Project:
    project = Project.objects.filter(pk=parse_object_id(project_id)).first()
    if project is None or not user_manages_project_data(user=user, project=project):
        raise Http404("No such project.")
    return project


def _object_get(queryset: QuerySet, *, user: AbstractBaseUser, object_id, what: str):
    obj = queryset.filter(pk=parse_object_id(object_id)).select_related("project").first()
    if obj is None or not user_manages_project_data(user=user, project=obj.project):
        raise Http404(f"No such {what}.")
    return obj


def run_get_for_user(*, user, run_id) -> TrainingRun:
    return _object_get(
        TrainingRun.objects.select_related(
            "snapshot", "input_model", "reward_model", "output_model", "sampling_job", "created_by"
        ),
        user=user,
        object_id=run_id, what="run",
    )


def model_get_for_user(*, user, model_id) -> ModelVersion:
    return _object_get(
        ModelVersion.objects.select_related("parent", "run", "snapshot", "created_by"), user=user, object_id=model_id,
        what="model",
    )


def snapshot_get_for_user(*, user, snapshot_id) -> DatasetSnapshot:
    return _object_get(
        DatasetSnapshot.objects.select_related("created_by"), user=user, object_id=snapshot_id, what="snapshot"
    )


def sampling_job_get_for_user(*, user, job_id) -> SamplingJob:
    return _object_get(
        SamplingJob.objects.select_related("run", "model", "created_by"), user=user, object_id=job_id,
        what="sampling job",
    )


def _visible(queryset: QuerySet, *, user, project: Project | None) -> QuerySet:
    if project is not None:
        return queryset.filter(project=project)
    return queryset.filter(project__in=projects_for_training(user=user))


def run_list(*, user, project: Project | None = None, kind: str | None = None, state: str | None = None) -> QuerySet:
    runs = _visible(TrainingRun.objects.all(), user=user, project=project)
    if kind:
        runs = runs.filter(kind=kind)
    if state:
        runs = runs.filter(state=state)
    return runs.select_related(
        "project", "snapshot", "input_model", "reward_model", "output_model", "sampling_job", "created_by"
    ).order_by("-id")


def model_list(*, user, project: Project | None = None, kind: str | None = None) -> QuerySet:
    models = _visible(ModelVersion.objects.all(), user=user, project=project)
    if kind:
        models = models.filter(kind=kind)
    return models.select_related("project", "parent", "run", "snapshot", "created_by").order_by("-id")


def snapshot_list(
    *, user, project: Project | None = None, kind: str | None = None, state: str | None = None
) -> QuerySet:
    snapshots = _visible(DatasetSnapshot.objects.all(), user=user, project=project)
    if kind:
        snapshots = snapshots.filter(kind=kind)
    if state:
        snapshots = snapshots.filter(state=state)
    return snapshots.select_related("created_by").order_by("-id")


def sampling_job_list(*, user, project: Project | None = None, state: str | None = None) -> QuerySet:
    jobs = _visible(SamplingJob.objects.all(), user=user, project=project)
    if state:
        jobs = jobs.filter(run__state=state)
    return jobs.select_related("run", "model", "created_by").order_by("-id")


def metric_points(*, run: TrainingRun, after_step: int | None = None, limit: int = 5000) -> list[dict]:
    points = MetricPoint.objects.filter(run=run).order_by("step")
    if after_step is not None:
        points = points.filter(step__gt=after_step)
    return [{"step": point.step, **point.values} for point in points[:limit]]


def metric_point_latest(*, run: TrainingRun) -> dict | None:
    """Return the run's newest logged point as ``{"step", ...figures}``, or None before the first."""
    point = MetricPoint.objects.filter(run=run).order_by("-step").first()
    return {"step": point.step, **point.values} if point else None


def current_model_ids(*, project_ids) -> tuple[set[int], set[int]]:
    """Return the ids of the current policies and of the current reward models of these projects."""
    rows = LoopPolicy.objects.filter(project_id__in=project_ids).values_list("current_policy_id", "current_reward_model_id")
    return {policy for policy, _ in rows if policy}, {reward for _, reward in rows if reward}


def model_promotions(*, model: ModelVersion) -> QuerySet[Promotion]:
    return model.promotions.select_related("promoted_by", "previous").order_by("-id")


def workers_list() -> QuerySet[GpuWorker]:
    return GpuWorker.objects.select_related("current_run").order_by("hostname")


def worker_is_alive(worker: GpuWorker) -> bool:
    return worker.last_heartbeat >= timezone.now() - timedelta(seconds=settings.RLHF_RUN_STALE_AFTER_SECONDS)


def model_lineage(*, project: Project) -> list[dict]:
    """Return the project's model versions as a forest: each with its children, sampled tasks and promotions."""
    models = list(
        ModelVersion.objects.filter(project=project).select_related("run", "snapshot").order_by("id")
    )
    jobs: dict[int, list[SamplingJob]] = {}
    for job in SamplingJob.objects.filter(project=project).select_related("run").order_by("id"):
        jobs.setdefault(job.model_id, []).append(job)
    policy = LoopPolicy.objects.filter(project=project).first()
    nodes = {
        model.pk: {"model": model, "children": [], "sampling_jobs": jobs.get(model.pk, []),
                   "is_current_policy": bool(policy and policy.current_policy_id == model.pk),
                   "is_current_reward": bool(policy and policy.current_reward_model_id == model.pk)}
        for model in models
    }
    roots = []
    for model in models:
        if model.parent_id in nodes:
            nodes[model.parent_id]["children"].append(nodes[model.pk])
        else:
            roots.append(nodes[model.pk])
    return roots


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

