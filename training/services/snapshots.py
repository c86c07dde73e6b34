"""Dataset snapshots: a project's labels frozen into a JSONL file, written once by the export services.

A snapshot row is created in ``building`` and written on the ``default`` queue (an export can take
minutes on a large project); runs that wait for it are dispatched when it is ready.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from annotation.models import Project, Prompt
from annotation.services.exports import sft_export_prepare
from audit.models import AuditAction
from audit.services import audit_record
from config.exceptions import ApplicationError, ConflictError, NotFoundError
from ranking.models import RankingTask
from ranking.services.exports import PAIR_MODES, PAIRS_LABELER, ExportReport, preference_lines
from training.models import DatasetSnapshot, Evaluation, ModelVersion, SnapshotKind, SnapshotState
from training.services.storage import data_path, file_sha256, jsonl_write_once

logger = logging.getLogger(__name__)

# Options each kind accepts, with their defaults; anything else is refused when the snapshot is asked for.
SNAPSHOT_OPTIONS: dict[str, dict] = {
    SnapshotKind.SFT: {},
    # task_ids: only these ranking tasks, each pair naming its task as "task" (a reward model check reads these)
    SnapshotKind.PREFERENCES: {"pairs": PAIRS_LABELER, "include_all_bad": True, "task_ids": None},
    # limit: at most this many prompts; not_sampled_by: leave out prompts this model version already answered;
    # evaluation: exactly that evaluation's held-out prompts (the others never hold a held-out prompt)
    SnapshotKind.PROMPTS: {"limit": None, "not_sampled_by": None, "evaluation": None},
}


def snapshot_options_check(*, project: Project, kind: str, options: dict | None) -> dict:
    """Return the options with defaults filled in; raise ApplicationError naming a bad one."""
    if kind not in SNAPSHOT_OPTIONS:
        raise ApplicationError(f"kind must be one of {', '.join(SNAPSHOT_OPTIONS)}; got {kind!r}.")
    options = dict(options or {})
    allowed = SNAPSHOT_OPTIONS[kind]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        known = ", ".join(allowed) or "none"
        raise ApplicationError(f"options.{unknown[0]}: unknown option for a {kind} snapshot (known: {known}).")
    checked = {**allowed, **options}
    if kind == SnapshotKind.PREFERENCES:
        if checked["pairs"] not in PAIR_MODES:
            raise ApplicationError(f"options.pairs must be one of {', '.join(PAIR_MODES)}.")
        if not isinstance(checked["include_all_bad"], bool):
            raise ApplicationError("options.include_all_bad must be true or false.")
        task_ids = checked["task_ids"]
        if task_ids is not None and (
            not isinstance(task_ids, list) or not task_ids
            or not all(isinstance(pk, int) and not isinstance(pk, bool) and pk > 0 for pk in task_ids)
        ):
            raise ApplicationError("options.task_ids must be a non-empty list of ranking task ids (or null for all).")
    if kind == SnapshotKind.PROMPTS:
        limit = checked["limit"]
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise ApplicationError("options.limit must be a positive integer (or null for every prompt).")
        model_id = checked["not_sampled_by"]
        if model_id is not None and not ModelVersion.objects.filter(pk=model_id, project=project).exists():
            raise ApplicationError("options.not_sampled_by must name a model version of this project.")
        evaluation_id = checked["evaluation"]
        if evaluation_id is not None and not Evaluation.objects.filter(pk=evaluation_id, project=project).exists():
            raise ApplicationError("options.evaluation must name an evaluation of this project.")
    return checked


def snapshot_request(
    *, project: Project, kind: str, options: dict | None = None, created_by: AbstractBaseUser | None = None
) -> DatasetSnapshot:
    """Create a snapshot in ``building`` and queue its file to be written (after commit)."""
    checked = snapshot_options_check(project=project, kind=kind, options=options)
    snapshot = DatasetSnapshot.objects.create(
        project=project, kind=kind, options=checked, labels_until=timezone.now(), created_by=created_by
    )
    from training.tasks import snapshot_build_task

    transaction.on_commit(lambda: snapshot_build_task.delay(snapshot.pk))
    return snapshot


def snapshot_file_open(*, snapshot: DatasetSnapshot, downloaded_by: AbstractBaseUser) -> BinaryIO:
    """Open a ready snapshot's file for a person to download, and record the export in the audit trail."""
    if snapshot.state == SnapshotState.BUILDING:
        raise ConflictError(f"Snapshot {snapshot.pk} is still building; download it once it is ready.")
    if snapshot.state == SnapshotState.FAILED:
        raise ConflictError(f"Snapshot {snapshot.pk} failed to build, it has no file: {snapshot.error}")
    try:
        handle = open(data_path(snapshot.file_path), "rb")
    except OSError:
        raise NotFoundError(f"Snapshot {snapshot.pk}'s file is missing from the data root.") from None
    audit_record(actor=downloaded_by, action=AuditAction.EXPORT, project=snapshot.project, obj=snapshot,
                 details={"format": f"{snapshot.kind} snapshot", "rows": snapshot.row_count, "sha256": snapshot.sha256})
    return handle


def snapshot_build(*, snapshot: DatasetSnapshot) -> DatasetSnapshot:
    """Write the snapshot's file once and mark it ready (or failed with the reason); idempotent.

    Then dispatch the runs that were waiting for it.
    """
    snapshot.refresh_from_db()
    if snapshot.state != SnapshotState.BUILDING:
        return snapshot
    relative = f"snapshots/{snapshot.project_id}/{snapshot.pk}-{snapshot.kind}.jsonl"
    path = data_path(relative)
    try:
        try:
            sha256, rows, size = jsonl_write_once(path, _snapshot_lines(snapshot))
        except FileExistsError:
            # written by an earlier builder that died before marking it, or by a second builder the
            # reconciler sent meanwhile: the file is complete (it is linked into place last), use it
            sha256, size = file_sha256(path), path.stat().st_size
            with open(path, "rb") as handle:
                rows = sum(1 for _ in handle)
    except ApplicationError as error:
        return _snapshot_fail(snapshot, str(error))
    except Exception as error:
        # e.g. a full disk: the snapshot fails with the reason (its runs fail with it); the task logs it
        _snapshot_fail(snapshot, f"{type(error).__name__}: {error}")
        raise
    marked = DatasetSnapshot.objects.filter(pk=snapshot.pk, state=SnapshotState.BUILDING).update(
        file_path=relative, sha256=sha256, row_count=rows, size_bytes=size, state=SnapshotState.READY,
        finished_at=timezone.now(),
    )
    snapshot.refresh_from_db()
    if not marked:
        return snapshot  # the other builder marked it and dispatched its runs
    logger.info("snapshot %s ready: %s rows, sha256 %s", snapshot.pk, rows, sha256)
    from training.services.runs import runs_waiting_on_snapshot_settle

    runs_waiting_on_snapshot_settle(snapshot=snapshot)
    return snapshot


def _snapshot_fail(snapshot: DatasetSnapshot, reason: str) -> DatasetSnapshot:
    if not DatasetSnapshot.objects.filter(pk=snapshot.pk, state=SnapshotState.BUILDING).update(
        state=SnapshotState.FAILED, error=reason, finished_at=timezone.now()
    ):
        snapshot.refresh_from_db()
        return snapshot
    snapshot.refresh_from_db()
    from training.services.runs import runs_waiting_on_snapshot_settle

    runs_waiting_on_snapshot_settle(snapshot=snapshot)
    return snapshot


def _snapshot_lines(snapshot: DatasetSnapshot) -> Iterator[bytes]:
    project, options = snapshot.project, snapshot.options
    if snapshot.kind == SnapshotKind.SFT:
        export = sft_export_prepare(project=project, snapshot_at=snapshot.labels_until)
        if export.row_count == 0:
            raise ApplicationError("No accepted demonstrations yet: an SFT snapshot would be empty.")
        yield from export.lines()
    elif snapshot.kind == SnapshotKind.PREFERENCES:
        task_ids = options.get("task_ids")  # absent from snapshots made before the option existed
        report = ExportReport()
        lines = preference_lines(
            project=project, pairs=options["pairs"], include_all_bad=options["include_all_bad"],
            rankings_until=snapshot.labels_until, task_ids=task_ids, with_task=task_ids is not None, report=report,
        )
        yield from _non_empty((line.encode() for line in lines), "No preference pairs yet: rank some tasks first.")
        if report.skipped_count:
            logger.warning("snapshot %s left out %s ordering(s) that don't fit their task's answers: %s",
                           snapshot.pk, report.skipped_count, ", ".join(report.skipped))
    elif options.get("evaluation") is not None:
        prompts = Prompt.objects.filter(evaluations=options["evaluation"]).order_by("pk").iterator(chunk_size=1000)
        rows = ({"id": prompt.pk, "messages": [{"role": "user", "content": prompt.text}]} for prompt in prompts)
        yield from _non_empty(_json_lines(rows), "The evaluation has no prompts.")
    else:
        prompts = prompts_for_sampling(
            project=project, until=snapshot.labels_until, limit=options["limit"],
            not_sampled_by=options["not_sampled_by"],
        )
        rows = ({"id": prompt.pk, "messages": [{"role": "user", "content": prompt.text}]} for prompt in prompts)
        yield from _non_empty(_json_lines(rows), "No prompts to use: the queue is empty (or every prompt was sampled).")


def prompts_for_sampling(*, project: Project, until: datetime, limit: int | None, not_sampled_by: int | None):
    """Return the project's active prompts made up to ``until``, oldest first, optionally leaving out those
    a model version already answered (its name is the generator of its sampled answers). Held-out
    prompts are never among them: models are judged on those, so they never train on them."""
    prompts = Prompt.objects.filter(
        project=project, is_active=True, held_out=False, created_at__lte=until
    ).order_by("pk")
    if not_sampled_by is not None:
        name = ModelVersion.objects.values_list("name", flat=True).get(pk=not_sampled_by)
        sampled = RankingTask.objects.filter(prompt=OuterRef("pk"), responses__generator=name)
        prompts = prompts.exclude(Exists(sampled))
    if limit is not None:
        prompts = prompts[:limit]
    return prompts.iterator(chunk_size=1000)


def _json_lines(rows) -> Iterator[bytes]:
    for row in rows:
        yield (json.dumps(row, ensure_ascii=False) + "\n").encode()


def _non_empty(lines: Iterator[bytes], message: str) -> Iterator[bytes]:
    empty = True
    for line in lines:
        empty = False
        yield line
    if empty:
        raise ApplicationError(message)
