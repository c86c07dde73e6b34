"""The loop: on every beat tick (and after every run), start the steps whose thresholds are met.

One tick of a project holds its loop-policy row lock, so ticks of one project never interleave; the
``loop:<kind>`` dedup key makes a second run of a step impossible while one is active anyway.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from annotation.models import Project
from config.exceptions import ApplicationError
from training.models import LoopPolicy, Promotion, RunKind, RunTrigger
from training.selectors.loop import loop_policy_get, loop_status
from training.services.evaluations import evaluation_start
from training.services.model_versions import model_promote
from training.services.runs import run_trigger
from training.services.sampling import sampling_job_start

logger = logging.getLogger(__name__)


def loop_tick(*, project: Project) -> list[str]:
    """Start every step of the project's loop that is ready; return what was started, in words."""
    with transaction.atomic():
        policy = LoopPolicy.objects.select_for_update().filter(project=project).first()
        if policy is None or not policy.enabled:
            return []
        started, notes = [], []
        promotion = reward_model_auto_promote(project=project)
        if promotion is not None:
            started.append(f"promoted reward model {promotion.model.name}")
        tried: set[str] = set()
        while True:  # status is read again after each start: a promotion changes what is sampled next
            step = next(
                (step for step in loop_status(project=project).steps if step.ready and step.key not in tried), None
            )
            if step is None:
                break
            tried.add(step.key)
            try:
                with transaction.atomic():
                    started.append(_step_start(project=project, key=step.key, inputs=step.inputs))
            except ApplicationError as error:  # e.g. a template the engine refuses: shown on the Training page
                notes.append(f"{step.title}: {error.message}")
                logger.warning("loop of project %s: %s could not start: %s", project.pk, step.key, error.message)
        policy.last_tick_at, policy.last_tick_note = timezone.now(), "\n".join(notes)
        policy.save(update_fields=["last_tick_at", "last_tick_note"])
    if started:
        logger.info("loop of project %s started: %s", project.pk, ", ".join(started))
    return started


def loop_step_start_now(*, project: Project, key: str, started_by=None) -> str:
    """Start one step now, whatever its threshold says ("run the next step now" on the Training page)."""
    status = loop_status(project=project)
    step = next((step for step in status.steps if step.key == key), None)
    if step is None:
        raise ApplicationError(f"The loop has no step {key!r}.")
    if step.active_run is not None:
        raise ApplicationError(f"{step.title} is already running (run {step.active_run.pk}).")
    missing = [name for name, value in step.inputs.items() if value is None and name != "kind"]
    if missing:
        raise ApplicationError(f"{step.title} can't start yet: it waits for {step.waiting_for}.")
    with transaction.atomic():
        return _step_start(project=project, key=key, inputs=step.inputs, started_by=started_by)


def _step_start(*, project: Project, key: str, inputs: dict, started_by=None) -> str:
    trigger = RunTrigger.LOOP
    if key == "promote":
        model, baseline = inputs["model"], inputs.get("evaluate_against")
        if baseline is not None and started_by is None:  # people judge it first (min_win_rate_to_promote)
            policy = loop_policy_get(project=project)
            evaluation = evaluation_start(
                project=project, models=[model, baseline], num_prompts=policy.evaluation_prompts, trigger=trigger,
            )
            return f"evaluation {evaluation.pk} of {model.name} against {baseline.name}"
        model_promote(model=model, promoted_by=started_by, automatic=started_by is None,
                      reason=inputs.get("reason") or "loop")
        return f"promoted {model.name}"
    if key == "sample":
        policy = loop_policy_get(project=project)
        job = sampling_job_start(
            project=project, model=inputs["model"], num_prompts=policy.prompts_per_sampling_job, trigger=trigger,
            created_by=started_by,
        )
        return f"sampling job {job.pk}"
    kind = {"sft": RunKind.SFT, "ppo": RunKind.PPO}.get(key) or inputs["kind"]
    run = run_trigger(
        project=project, kind=kind, input_model=inputs.get("input_model"), reward_model=inputs.get("reward_model"),
        trigger=trigger, created_by=started_by,
    )
    return f"{kind} run {run.pk}"


def reward_model_auto_promote(*, project: Project) -> Promotion | None:
    """Make the newest trained reward model current if it is newer than the current one (PPO trains on it)."""
    from training.models import ModelKind, ModelVersion

    policy = LoopPolicy.objects.filter(project=project).first()
    if policy is None:
        return None
    newest = ModelVersion.objects.filter(project=project, kind=ModelKind.REWARD, run__isnull=False).order_by("-id").first()
    if newest is None or newest.pk == policy.current_reward_model_id:
        return None
    if policy.current_reward_model_id and newest.pk < policy.current_reward_model_id:
        return None
    return model_promote(model=newest, role=Promotion.Role.REWARD, automatic=True, reason="newest reward model")
