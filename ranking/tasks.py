"""Celery tasks for ranking (default queue): thin wrappers that load by id and call one service."""

from celery import shared_task

from ranking.services.leasing import leases_purge_expired
from ranking.services.tasks import ranking_tasks_consensus_recompute


@shared_task(name="ranking.consensus_recompute")
def ranking_consensus_recompute(task_ids: list[int]) -> int:
    """Recompute the consensus of these ranking tasks; return how many were recomputed."""
    return ranking_tasks_consensus_recompute(task_ids=task_ids)


@shared_task(name="ranking.leases_purge_expired")
def ranking_leases_purge_expired() -> int:
    """Delete expired leases and give their tasks' slots back (beat runs it every minute)."""
    return leases_purge_expired()
