"""Celery tasks for annotation (default queue): thin wrappers that load by id and call one service."""

from celery import shared_task

from annotation.services.import_jobs import project_import_job_run


@shared_task(name="annotation.import_job_run")
def project_import_job_run_task(job_id: int) -> str | None:
    """Import a stored prompt or demonstration file (all or nothing); return the job's final state."""
    job = project_import_job_run(job_id=job_id)
    return job.state if job is not None else None
