"""Celery tasks of the training app: thin wrappers that load by id and call one service.

``gpu_*`` tasks go to the ``gpu`` queue (settings.CELERY_TASK_ROUTES): one run at a time per node,
acks late, prefetch 1, a time limit sized for training. Everything else runs on ``default``.
"""

from celery import shared_task
from django.conf import settings

from annotation.models import Project
from training.models import DatasetSnapshot, LoopPolicy
from training.services.execution import run_execute
from training.services.loop import loop_tick
from training.services.reconcile import runs_reconcile
from training.services.reward_checks import reward_checks_start
from training.services.snapshots import snapshot_build


@shared_task(name="training.tasks.gpu_run_execute", acks_late=True, time_limit=settings.RLHF_GPU_TASK_TIME_LIMIT,
             soft_time_limit=None)
def gpu_run_execute(run_id: int) -> str:
    """Claim the run and run its engine to the end (a duplicate message finds it claimed and does nothing)."""
    return run_execute(run_id=run_id)


@shared_task(name="training.tasks.snapshot_build")
def snapshot_build_task(snapshot_id: int) -> str:
    """Write the snapshot's file (idempotent) and dispatch the runs waiting for it."""
    snapshot = DatasetSnapshot.objects.filter(pk=snapshot_id).first()
    if snapshot is None:
        return "gone"
    return snapshot_build(snapshot=snapshot).state


@shared_task(name="training.tasks.loop_tick")
def loop_tick_task(project_id: int | None = None) -> dict:
    """Start what is ready in one project's loop, or in every project whose loop is on."""
    if project_id is not None:
        projects = Project.objects.filter(pk=project_id)
    else:
        projects = Project.objects.filter(pk__in=LoopPolicy.objects.filter(enabled=True).values("project_id"))
    return {project.pk: loop_tick(project=project) for project in projects}


@shared_task(name="training.tasks.runs_reconcile")
def runs_reconcile_task() -> dict:
    """Requeue runs whose worker died, resend lost messages (beat, every RLHF_RECONCILE_SECONDS)."""
    return runs_reconcile()


@shared_task(name="training.tasks.reward_checks_start")
def reward_checks_start_task(project_id: int | None = None) -> dict:
    """Let current reward models score the completed tasks they never trained on (beat, every
    RLHF_REWARD_CHECK_SECONDS, and after a reward model is promoted)."""
    return reward_checks_start(project_ids=None if project_id is None else [project_id])
