"""Import jobs: a ranking-task file too large for one request is stored, then imported by the worker.

The request stores the upload under the data root (counting its lines for the progress bar) and
queues the job; the worker runs the same all-or-nothing import as a small file gets
(``ranking_tasks_import``: one transaction), writing how many lines it has read on a second
database connection, so the page and the API see the progress while the import's own transaction
is still open. A worker that dies mid-import loses nothing (its transaction is rolled back) and
the redelivered message starts the job again from the top.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from annotation.models import Project, Role
from annotation.selectors import user_has_role
from annotation.services.import_jobs import import_progress_writer, import_upload_store
from config.exceptions import ApplicationError
from ranking.models import ImportJobState, RankingImportJob
from ranking.services.imports import FORMATS, REPORTED_LINES_MAX, ImportRefused, ranking_tasks_import

logger = logging.getLogger(__name__)

IMPORTS_DIR = "imports/ranking"
_LINE_NUMBER = re.compile(r"^line (\d+):")


def ranking_import_job_start(
    *, project: Project, user: AbstractBaseUser, upload: UploadedFile, format: str, skip_invalid: bool = False,
) -> RankingImportJob:
    """Store the upload and queue its import on the worker (after commit); refuse what can't be imported at all."""
    if format not in FORMATS:
        raise ApplicationError(f"format must be one of {', '.join(FORMATS)}; got {format!r}.")
    if project.is_archived:
        raise ApplicationError("The project is archived: it takes no new tasks.")
    if upload.size is not None and upload.size > settings.IMPORT_JOB_MAX_BYTES:
        raise ApplicationError(f"The file is larger than the import limit of {settings.IMPORT_JOB_MAX_BYTES} bytes.")
    relative, size, lines = import_upload_store(upload=upload, directory=f"{IMPORTS_DIR}/{project.pk}")
    job = RankingImportJob.objects.create(
        project=project, created_by=user, format=format, skip_invalid=skip_invalid,
        file_name=(upload.name or "")[:255], file_path=relative, size_bytes=size, lines_total=lines,
    )
    from ranking.tasks import ranking_import_job_run_task

    transaction.on_commit(lambda: ranking_import_job_run_task.delay(job.pk))
    return job


def ranking_import_job_run(*, job_id: int) -> RankingImportJob | None:
    """Import the job's file in one transaction; record the report, or the failure and its lines. Idempotent."""
    # a redelivered message finds it running: the worker that had it died and its transaction rolled back
    claimed = RankingImportJob.objects.filter(
        pk=job_id, state__in=[ImportJobState.QUEUED, ImportJobState.RUNNING]
    ).update(state=ImportJobState.RUNNING, started_at=timezone.now(), lines_done=0)
    if not claimed:
        return None
    job = RankingImportJob.objects.select_related("project", "created_by").get(pk=job_id)
    path = Path(settings.DATA_ROOT) / job.file_path
    progress, close = import_progress_writer(model=RankingImportJob, job_id=job.pk)
    try:
        with open(path, "rb") as handle:
            report = ranking_tasks_import(
                project=job.project, file=handle, format=job.format, created_by=job.created_by,
                skip_invalid=job.skip_invalid, progress=progress, keep_task_ids=False,  # size: checked at the start
            )
    except ImportRefused as refused:
        line = _LINE_NUMBER.match(refused.errors[0])
        _finish(job, state=ImportJobState.FAILED, error=refused.message, errors=refused.errors,
                error_line=int(line.group(1)) if line else None)
    except ApplicationError as error:
        _finish(job, state=ImportJobState.FAILED, error=error.message)
    except Exception as error:  # e.g. the file vanished or the database went away: the job says so, the log has why
        logger.exception("ranking import job %s failed", job.pk)
        _finish(job, state=ImportJobState.FAILED, error=f"The import failed ({type(error).__name__}); nothing was imported.")
    else:
        _finish(
            job, state=ImportJobState.DONE, lines_done=report.lines_read, tasks_created=report.tasks_created,
            rankings_imported=report.rankings_imported, duplicates_count=len(report.duplicate_lines),
            invalid_count=len(report.invalid_lines),
            report={
                "duplicates": report.duplicates,
                "skipped_lines": {"count": len(report.skipped_lines),
                                  "lines": report.skipped_lines[:REPORTED_LINES_MAX]},
                "skipped_invalid": report.skipped_invalid,
            },
        )
    finally:
        close()
    path.unlink(missing_ok=True)
    RankingImportJob.objects.filter(pk=job.pk).update(file_path="")
    job.refresh_from_db()
    return job


def _finish(job: RankingImportJob, *, state: str, **fields) -> None:
    RankingImportJob.objects.filter(pk=job.pk).update(state=state, finished_at=timezone.now(), **fields)


def ranking_import_job_get_for_manager(*, user: AbstractBaseUser, job_id: int) -> RankingImportJob:
    """The job, when ``user`` manages its project; else 404, as for a project they can't see."""
    job = RankingImportJob.objects.select_related("project").filter(pk=job_id).first()
    if job is None or not user.is_authenticated or not user_has_role(user=user, project=job.project, role=Role.MANAGER):
        raise Http404("No such import.")
    return job
