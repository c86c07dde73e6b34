"""The reconciler (beat): give runs whose holder died back to the queue, and resend lost messages.

The database is the truth, the broker a doorbell: a flushed or restarted Redis loses messages, a
killed worker leaves its run ``running`` with a heartbeat that stops. Both are found here.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from training.models import DatasetSnapshot, GpuWorker, RunState, SnapshotState, TrainingRun
from training.services.runs import run_dispatch

logger = logging.getLogger(__name__)


def runs_reconcile() -> dict[str, int]:
    """Requeue runs with a dead holder, resend runs and snapshots whose message was lost; return the counts."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.RLHF_RUN_STALE_AFTER_SECONDS)
    counts = {"requeued": 0, "failed": 0, "redispatched": 0, "snapshots": 0}

    for run in TrainingRun.objects.filter(state=RunState.RUNNING).filter(
        Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True)
    ):
        with transaction.atomic():
            holding = TrainingRun.objects.filter(pk=run.pk, state=RunState.RUNNING, attempt=run.attempt,
                                                 heartbeat_at=run.heartbeat_at)
            silent_since = f"{run.heartbeat_at:%H:%M:%S} UTC" if run.heartbeat_at else "it was claimed"
            reason = f"Attempt {run.attempt} lost its worker {run.worker} (no heartbeat since {silent_since})."
            if run.attempt >= run.max_attempts:
                error = f"Gave up after {run.attempt} attempts. {reason}"
                if holding.update(state=RunState.FAILED, finished_at=now, error=error):
                    counts["failed"] += 1
                    logger.warning("run %s failed: %s", run.pk, error)
                    _loop_nudge(project_id=run.project_id)
                continue
            if holding.update(state=RunState.QUEUED, error=reason):
                run.refresh_from_db()
                run_dispatch(run=run)
                counts["requeued"] += 1
                logger.warning("run %s requeued: %s", run.pk, reason)

    # A queued run whose message sat unclaimed while a GPU worker stood idle has lost its message; one
    # never sent although its snapshot is ready lost it before it was sent (its snapshot's builder
    # died between marking the snapshot ready and dispatching the runs waiting for it).
    redispatch_before = now - timedelta(seconds=settings.RLHF_RUN_REDISPATCH_SECONDS)
    idle_worker = GpuWorker.objects.filter(last_heartbeat__gte=stale_before, current_run__isnull=True).exists()
    if idle_worker:
        lost = TrainingRun.objects.filter(state=RunState.QUEUED).filter(
            Q(dispatched_at__lt=redispatch_before) | Q(dispatched_at__isnull=True, created_at__lt=redispatch_before)
        ).filter(Q(snapshot__isnull=True) | Q(snapshot__state=SnapshotState.READY))
        for run in lost:
            with transaction.atomic():
                run_dispatch(run=run)
            counts["redispatched"] += 1
            logger.warning("run %s: no worker took its message; sent again", run.pk)

    rebuild_before = now - timedelta(seconds=settings.RLHF_SNAPSHOT_REBUILD_SECONDS)
    from training.tasks import snapshot_build_task

    for snapshot in DatasetSnapshot.objects.filter(state=SnapshotState.BUILDING, created_at__lt=rebuild_before):
        snapshot_build_task.delay(snapshot.pk)
        counts["snapshots"] += 1
    return counts


def _loop_nudge(*, project_id: int) -> None:
    """Let the project's loop take its next step now (as after any finished run), not at its next tick."""
    from training.tasks import loop_tick_task

    transaction.on_commit(lambda: loop_tick_task.delay(project_id))
