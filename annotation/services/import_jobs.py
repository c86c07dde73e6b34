"""Import jobs: a prompt or demonstration file too large for one request is stored, then imported by the worker.

The design of ranking's import jobs (``ranking.services.import_jobs``): the request stores the
upload under the data root (counting its lines for the progress bar) and queues the job after
commit; the worker runs the same all-or-nothing import as a small file gets (``project_import``:
one transaction), writing how many lines it has read on a second database connection, so the page
and the API see the progress while the import's own transaction is still open. A worker that dies
mid-import loses nothing (its transaction is rolled back) and the redelivered message starts the
job again from the top.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, models, transaction
from django.http import Http404
from django.utils import timezone

from annotation.models import DialogueStatus, ImportJobState, Project, ProjectImportJob, Role
from annotation.selectors import user_has_role
from annotation.services.imports import (
    FORMATS,
    IMPORTED_DIALOGUE_STATUSES,
    PROMPT_FORMATS,
    ImportLineError,
    ImportTooLargeError,
    project_import,
)
from config.exceptions import ApplicationError

logger = logging.getLogger(__name__)

IMPORTS_DIR = "imports/project"


def import_upload_store(*, upload: UploadedFile, directory: str) -> tuple[str, int, int]:
    """Write ``upload`` to a new file under ``DATA_ROOT/directory``; return (its path under the data root, bytes, lines)."""
    relative = f"{directory}/{uuid.uuid4().hex}"
    path = Path(settings.DATA_ROOT) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    lines, size, last = 0, 0, b"\n"
    with open(path, "wb") as handle:
        for chunk in upload.chunks():
            handle.write(chunk)
            lines += chunk.count(b"\n")
            size += len(chunk)
            last = chunk[-1:] or last
    if size and last != b"\n":
        lines += 1  # a last line without its line break
    return relative, size, lines


def import_progress_writer(*, model: type[models.Model], job_id: int) -> tuple[Callable[[int], None], Callable[[], None]]:
    """Return (write lines read, close): a connection of its own (autocommit), so the progress shows while the
    import's transaction is open. On the embedded SQLite a second writer would wait for the import's lock:
    progress then shows at the end only."""
    if connection.vendor != "postgresql":
        return (lambda done: None), (lambda: None)
    side = None
    sql = f"UPDATE {connection.ops.quote_name(model._meta.db_table)} SET lines_done = %s WHERE id = %s"

    def write(done: int) -> None:
        nonlocal side
        try:
            if side is None:
                side = connection.get_new_connection(connection.get_connection_params())
                side.autocommit = True  # each update is visible at once
            with side.cursor() as cursor:
                cursor.execute(sql, [done, job_id])
        except Exception:  # the bar is advisory: a failed write never fails the import (the end is recorded anyway)
            logger.warning("import job %s: could not record its progress", job_id, exc_info=True)

    def close() -> None:
        if side is not None:
            side.close()

    return write, close


def import_check_fits_request(*, size: int | None, jobs_url: str) -> None:
    """Refuse (413) a file too large to import within one request (``IMPORT_INLINE_MAX_BYTES``), naming the
    import-job endpoint that takes it: a request has the web server's time limit, the worker has none."""
    limit = settings.IMPORT_INLINE_MAX_BYTES
    if size is not None and size > limit:
        raise ImportTooLargeError(
            f"The file has {size:,} bytes; this endpoint imports files up to {limit:,} bytes within the request. "
            f"Start an import job on the worker instead: POST the same fields to {jobs_url}, then poll the job's url.",
            extra={"import_jobs_url": jobs_url},
        )


def project_import_job_start(
    *, project: Project, user: AbstractBaseUser, upload: UploadedFile, format: str, skip_invalid: bool = False,
    dialogue_status: str = DialogueStatus.ACCEPTED,
) -> ProjectImportJob:
    """Store the upload and queue its import on the worker (after commit); refuse what can't be imported at all."""
    if format not in FORMATS:
        raise ApplicationError(f"format must be one of {', '.join(FORMATS)}; got {format!r}.")
    if dialogue_status not in IMPORTED_DIALOGUE_STATUSES:
        raise ApplicationError("Imported dialogues are either accepted or submitted for review.")
    if project.is_archived:
        raise ApplicationError("This project is archived.")
    limit = settings.IMPORT_JOB_MAX_BYTES
    if upload.size is not None and upload.size > limit:
        raise ImportTooLargeError(f"The file has {upload.size:,} bytes; imports are limited to {limit:,} bytes.")
    relative, size, lines = import_upload_store(upload=upload, directory=f"{IMPORTS_DIR}/{project.pk}")
    job = ProjectImportJob.objects.create(
        project=project, created_by=user, format=format, skip_invalid=skip_invalid, dialogue_status=dialogue_status,
        kind="prompts" if format in PROMPT_FORMATS else "dialogues", file_name=(upload.name or "")[:255],
        file_path=relative, size_bytes=size, lines_total=lines,
    )
    from annotation.tasks import project_import_job_run_task

    transaction.on_commit(lambda: project_import_job_run_task.delay(job.pk))
    return job


def project_import_job_run(*, job_id: int) -> ProjectImportJob | None:
    """Import the job's file in one transaction; record the report, or the failure and its line. Idempotent."""
    # a redelivered message finds it running: the worker that had it died and its transaction rolled back
    claimed = ProjectImportJob.objects.filter(
        pk=job_id, state__in=[ImportJobState.QUEUED, ImportJobState.RUNNING]
    ).update(state=ImportJobState.RUNNING, started_at=timezone.now(), lines_done=0)
    if not claimed:
        return None
    job = ProjectImportJob.objects.select_related("project", "created_by").get(pk=job_id)
    path = Path(settings.DATA_ROOT) / job.file_path
    progress, close = import_progress_writer(model=ProjectImportJob, job_id=job.pk)
    try:
        with open(path, "rb") as handle:
            report = project_import(
                project=job.project, user=job.created_by, file=File(handle, name=job.file_name), format=job.format,
                skip_invalid=job.skip_invalid, dialogue_status=job.dialogue_status,
                max_bytes=settings.IMPORT_JOB_MAX_BYTES, progress=progress,
            )
    except ImportLineError as refused:
        _finish(job, state=ImportJobState.FAILED, error=f"Nothing was imported: {refused.message}",
                errors=[refused.message], error_line=refused.line)
    except ApplicationError as error:
        _finish(job, state=ImportJobState.FAILED, error=error.message)
    except Exception as error:  # e.g. the file vanished or the database went away: the job says so, the log has why
        logger.exception("project import job %s failed", job.pk)
        _finish(job, state=ImportJobState.FAILED, error=f"The import failed ({type(error).__name__}); nothing was imported.")
    else:
        _finish(
            job, state=ImportJobState.DONE, lines_done=job.lines_total, rows=report.rows, created=report.created,
            duplicates_count=len(report.duplicate_lines), invalid_count=len(report.skipped), report=report.as_dict(),
        )
    finally:
        close()
    path.unlink(missing_ok=True)
    ProjectImportJob.objects.filter(pk=job.pk).update(file_path="")
    job.refresh_from_db()
    return job


def _finish(job: ProjectImportJob, *, state: str, **fields) -> None:
    ProjectImportJob.objects.filter(pk=job.pk).update(state=state, finished_at=timezone.now(), **fields)


def project_import_job_get_for_manager(*, user: AbstractBaseUser, job_id: int) -> ProjectImportJob:
    """The job, when ``user`` manages its project; else 404, as for a project they can't see."""
    job = ProjectImportJob.objects.select_related("project").filter(pk=job_id).first()
    if job is None or not user.is_authenticated or not user_has_role(user=user, project=job.project, role=Role.MANAGER):
        raise Http404("No such import.")
    return job

