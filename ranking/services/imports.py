"""Import ranking tasks from JSONL: ``ranking-jsonl`` and Anthropic's ``hh-rlhf``. All or nothing by default.

Every line is parsed and validated before anything is written; any error refuses the whole file
with the line numbers of (up to ``MAX_REPORTED_ERRORS``) errors. With ``skip_invalid`` a line that
can't be imported is left out and reported with its reason instead (``ImportReport.skipped_invalid``),
as the demonstrations importer does: Anthropic's own files hold a few such lines (an empty last
assistant turn, chosen and rejected that differ before it). A task already in the project
(same context and answers, see ``ranking_task_content_hash``), or repeated in the file, is skipped
and reported, so importing a file twice creates its tasks once.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import Project
from audit.models import AuditAction
from audit.services import audit_record
from config.exceptions import ApplicationError, ConflictError
from ranking.models import Ranking, RankingTask, TaskSource, TaskStatus
from ranking.services.tasks import (
    ResponseSpec,
    ranking_task_build,
    ranking_tasks_save,
    response_author_resolve,
)

FORMAT_RANKING_JSONL = "ranking-jsonl"
FORMAT_HH_RLHF = "hh-rlhf"
FORMATS = (FORMAT_RANKING_JSONL, FORMAT_HH_RLHF)
MAX_REPORTED_ERRORS = 20
REPORTED_LINES_MAX = 100  # duplicate line numbers listed in a report (the count is always complete)
HH_GENERATOR = "hh-rlhf"
_HH_TURN = re.compile(r"\n\n(Human|Assistant|System):[ ]?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant", "System": "system"}


class ImportRefused(ApplicationError):
    """The file has errors; nothing was imported. ``errors`` lists "line N: what is wrong"."""

    def __init__(self, errors: list[str], *, total: int):
        more = f" (and {total - len(errors)} more)" if total > len(errors) else ""
        super().__init__(
            f"Nothing was imported: {total} line(s) have errors{more}. First: {errors[0]}",
            extra={"errors": errors, "error_count": total},
        )
        self.errors = errors


@dataclass
class ImportReport:
    format: str
    tasks_created: int = 0
    rankings_imported: int = 0
    skipped_lines: list[dict] = field(default_factory=list)  # lines left out on purpose, with why
    task_ids: list[int] = field(default_factory=list)
    duplicate_lines: list[int] = field(default_factory=list)  # tasks already in the project or earlier in the file
    invalid_lines: list[dict] = field(default_factory=list)  # {"line", "reason"}: left out, with skip_invalid only

    @property
    def duplicates(self) -> dict:
        return {"count": len(self.duplicate_lines), "lines": sorted(self.duplicate_lines)[:REPORTED_LINES_MAX]}

    @property
    def skipped_invalid(self) -> dict:
        return {"count": len(self.invalid_lines), "lines": self.invalid_lines[:REPORTED_LINES_MAX]}


def ranking_task_content_hash(*, context: list[dict], answers: Iterable[str]) -> str:
    """Hash what makes two tasks the same: the context and the answers' texts, in any order."""
    payload = json.dumps([context, sorted(answers)], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _lines(file: Iterable[bytes | str]) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(file, start=1):
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"line {number}: not UTF-8 text") from None
        if number == 1:
            raw = raw.lstrip("\ufeff")  # a byte order mark, as Windows editors write
        if raw.strip():
            yield number, raw


def hh_transcript_parse(text: object) -> list[dict[str, str]]:
    """Turn an HH-RLHF transcript ("\\n\\nHuman: …\\n\\nAssistant: …") into [{role, content}] messages."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("must be a non-empty transcript string")
    if not text.startswith("\n\n"):
        text = "\n\n" + text.lstrip()
    parts = _HH_TURN.split(text)
    if parts[0].strip():
        raise ValueError('must start with "Human:" (text before the first turn)')
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        messages.append({"role": _HH_ROLES[speaker], "content": content.strip()})
    if not messages:
        raise ValueError('holds no "Human:" / "Assistant:" turns')
    return messages


def hh_transcript_render(messages: Iterable[dict[str, str]]) -> str:
    """Render messages the HH-RLHF way; the inverse of ``hh_transcript_parse``."""
    names = {role: name for name, role in _HH_ROLES.items()}
    return "".join(f"\n\n{names[m['role']]}: {m['content']}" for m in messages)


def _hh_line(row: dict) -> tuple[list[dict], str, str]:
    """Return (context, chosen answer, rejected answer) of one HH-RLHF line."""
    chosen = hh_transcript_parse(row.get("chosen"))
    rejected = hh_transcript_parse(row.get("rejected"))
    for name, messages in (("chosen", chosen), ("rejected", rejected)):
        if messages[-1]["role"] != "assistant":
            raise ValueError(f'{name} must end with an "Assistant:" turn')
        if not messages[-1]["content"]:
            raise ValueError(f"{name}: the last assistant turn is empty")
    if chosen[:-1] != rejected[:-1]:
        raise ValueError("chosen and rejected must share the conversation before their last assistant turn")
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


def ranking_tasks_import(
    *, project: Project, file: Iterable[bytes | str], format: str, created_by: AbstractBaseUser | None, size: int = 0,
    skip_invalid: bool = False,
) -> ImportReport:
    """Import every line of ``file`` as a ranking task of ``project``, or nothing when any line is wrong.

    ``hh-rlhf`` lines become K=2 tasks carrying their human preference as an imported ranking (it
    counts as one of the task's rankings). Lines whose chosen and rejected answers are identical
    carry no preference and are skipped (listed in the report). A task whose context and answers
    are already in the project, or earlier in the file, is skipped and its line reported as a duplicate.
    With ``skip_invalid`` a line that can't be imported is skipped and reported with its reason
    instead of refusing the file (bytes that aren't UTF-8 still refuse it: that is the wrong file).
    """
    if format not in FORMATS:
        raise ApplicationError(f"format must be one of {', '.join(FORMATS)}; got {format!r}.")
    if project.is_archived:
        raise ApplicationError("The project is archived: it takes no new tasks.")
    if size > settings.IMPORT_MAX_BYTES:
        raise ApplicationError(f"The file is larger than the import limit of {settings.IMPORT_MAX_BYTES} bytes.")
    report = ImportReport(format=format)
    built = []
    preferences: list[bool] = []  # per built task: carries an imported preference (hh-rlhf)
    line_numbers: list[int] = []  # per built task: its line in the file
    errors: list[str] = []
    total_errors = 0
    source = TaskSource.HH_RLHF if format == FORMAT_HH_RLHF else TaskSource.RANKING_JSONL

    def line_invalid(number: int, reason: str) -> None:
        nonlocal total_errors
        if skip_invalid:
            report.invalid_lines.append({"line": number, "reason": reason})
            return
        total_errors += 1
        if len(errors) < MAX_REPORTED_ERRORS:
            errors.append(f"line {number}: {reason}")

    try:
        for number, text in _lines(file):
            try:
                row = json.loads(text)
                if not isinstance(row, dict):
                    raise ValueError("expected a JSON object")
                if format == FORMAT_HH_RLHF:
                    context, chosen, rejected = _hh_line(row)
                    if chosen == rejected:
                        report.skipped_lines.append({"line": number, "reason": "chosen and rejected are identical"})
                        continue
                    specs = [ResponseSpec(chosen, HH_GENERATOR), ResponseSpec(rejected, HH_GENERATOR)]
                    built.append(ranking_task_build(project=project, context=context, responses=specs, source=source,
                                                    created_by=created_by))
                    preferences.append(True)
                else:
                    built.append(_ranking_jsonl_build(row, project=project, created_by=created_by))
                    preferences.append(False)
                line_numbers.append(number)
            except json.JSONDecodeError as error:
                line_invalid(number, f"not valid JSON ({error.msg})")
            except RecursionError:
                line_invalid(number, "not valid JSON (nested too deeply)")
            except (ValueError, ValidationError) as error:
                line_invalid(number, " ".join(error.messages) if isinstance(error, ValidationError) else str(error))
    except ValueError as error:  # undecodable bytes: stop at once
        raise ImportRefused([str(error)], total=1) from None
    if total_errors:
        raise ImportRefused(errors, total=total_errors)
    if not built and report.invalid_lines:
        first = report.invalid_lines[0]
        raise ApplicationError(
            f"The file holds no valid tasks to import: {len(report.invalid_lines)} line(s) are invalid. "
            f"First: line {first['line']}: {first['reason']}"
        )
    if not built:
        raise ApplicationError("The file holds no tasks to import.")
    try:
        with transaction.atomic():
            fresh = _duplicates_drop(project=project, items=zip(line_numbers, built, preferences, strict=True),
                                     report=report)
            tasks = ranking_tasks_save(built=[item for _, item, _ in fresh])
            report.tasks_created = len(tasks)
            report.task_ids = [task.pk for task in tasks]
            carrying = [item for _, item, carries in fresh if carries]
            report.rankings_imported = _imported_preferences_save(project=project, tasks=carrying)
            audit_record(actor=created_by, action=AuditAction.IMPORT, project=project, details={
                "file": getattr(file, "name", ""), "format": format, "tasks_created": report.tasks_created,
                "rankings_imported": report.rankings_imported, "duplicates": len(report.duplicate_lines)})
    except IntegrityError as error:  # a concurrent import added some of the same tasks meanwhile
        raise ConflictError("Another import added some of these tasks at the same time; import again.") from error
    return report


def _duplicates_drop(*, project: Project, items, report: ImportReport) -> list:
    """Hash each built task; return those neither in the project nor earlier in the file, reporting the others.

    Runs inside the import's transaction; the unique constraint on (project, import_hash) refuses a
    task that a concurrent import saves between this check and our insert.
    """
    items = list(items)
    for _, (task, answers), _ in items:
        task.import_hash = ranking_task_content_hash(context=task.context, answers=[a.content for a in answers])
    hashes = [task.import_hash for _, (task, _), _ in items]
    existing: set[str] = set()
    for start in range(0, len(hashes), 1000):
        existing.update(
            RankingTask.objects.filter(project=project, import_hash__in=hashes[start:start + 1000])
            .values_list("import_hash", flat=True)
        )
    fresh = []
    for item in items:
        number, (task, _), _ = item
        if task.import_hash in existing:
            report.duplicate_lines.append(number)
        else:
            existing.add(task.import_hash)
            fresh.append(item)
    return fresh


def _ranking_jsonl_build(row: dict, *, project: Project, created_by):
    responses = row.get("responses")
    if not isinstance(responses, list):
        raise ValueError('"responses" must be a list of {"content", "generator"} objects')
    specs = []
    for index, response in enumerate(responses):
        if isinstance(response, str):
            response = {"content": response}
        if not isinstance(response, dict) or not isinstance(response.get("content"), str):
            raise ValueError(f'responses[{index}] must be an object with a "content" string')
        generator = response.get("generator") or ""
        if not isinstance(generator, str):
            raise ValueError(f"responses[{index}].generator must be a string")
        specs.append(ResponseSpec(response["content"], generator[:200],
                                  response_author_resolve(generator=generator, creator=created_by)))
    is_gold = row.get("is_gold", False)
    if not isinstance(is_gold, bool):
        raise ValueError('"is_gold" must be true or false')
    gold_order = row.get("gold_order")
    return ranking_task_build(
        project=project, context=row.get("context"), responses=specs, is_gold=is_gold or gold_order is not None,
        gold_positions=gold_order, source=TaskSource.RANKING_JSONL, created_by=created_by,
    )


def _imported_preferences_save(*, project: Project, tasks) -> int:
    """Save each task's imported ranking (first answer preferred) and complete tasks that need no more."""
    if not tasks:
        return 0
    rankings = [
        Ranking(task=task, is_imported=True, order=[[answers[0].pk], [answers[1].pk]]) for task, answers in tasks
    ]
    Ranking.objects.bulk_create(rankings, batch_size=1000)
    # each carried preference is one of its (new, not yet leased) task's rankings: `next` reads the count
    task_ids = [task.pk for task, _ in tasks]
    for start in range(0, len(task_ids), 1000):
        RankingTask.objects.filter(pk__in=task_ids[start:start + 1000]).update(rankings_count=F("rankings_count") + 1)
    if project.rankings_per_task <= 1:
        now = timezone.now()
        done = []
        for task, answers in tasks:
            task.consensus_order = [[answers[0].pk], [answers[1].pk]]
            task.status = TaskStatus.COMPLETE
            task.consensus_at = now
            done.append(task)
        RankingTask.objects.bulk_update(done, ["consensus_order", "status", "consensus_at"], batch_size=500)
    return len(rankings)
