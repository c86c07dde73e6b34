"""Celery tasks for ranking (default queue): thin wrappers that load by id and call one service."""

from celery import shared_task

from annotation.models import Project
from ranking.services.import_jobs import ranking_import_job_run
from ranking.services.leasing import leases_purge_expired
from ranking.services.stats import ranking_project_stats_rebuild
from ranking.services.tasks import ranking_tasks_consensus_recompute


@shared_task(name="ranking.consensus_recompute")
def ranking_consensus_recompute(task_ids: list[int]) -> int:
    """Recompute the consensus of these ranking tasks; return how many were recomputed."""
    return ranking_tasks_consensus_recompute(task_ids=task_ids)


@shared_task(name="ranking.leases_purge_expired")
def ranking_leases_purge_expired() -> int:
    """Delete expired leases and give their tasks' slots back (beat runs it every minute)."""
    return leases_purge_expired()


@shared_task(name="ranking.stats_rebuild")
def ranking_stats_rebuild(project_id: int) -> None:
    """Recount a project's quality figures from its rankings (after rows were written around the services)."""
    project = Project.objects.filter(pk=project_id).first()
    if project is not None:
        ranking_project_stats_rebuild(project=project)


@shared_task(name="ranking.import_job_run")
def ranking_import_job_run_task(job_id: int) -> str | None:
    """Import a stored ranking-task file (all or nothing); return the job's final state."""
    job = ranking_import_job_run(job_id=job_id)
    return job.state if job is not None else None
