"""Import ranking tasks from JSONL: ``ranking-jsonl`` and Anthropic's ``hh-rlhf``. All or nothing by default.

The file is read once, line by line, in one transaction: valid lines are written in batches as
they come (PostgreSQL ``COPY`` with ids drawn from the tables' sequences; ``bulk_create`` on other
databases), so memory stays flat and a million lines take minutes; the first wrong line stops the
writing, the rest of the file is still read to list (up to ``MAX_REPORTED_ERRORS``) errors with
their line numbers, and the transaction is rolled back: nothing was imported. Large files go
through the worker as an import job (``ranking.services.import_jobs``) with a progress bar.

With ``skip_invalid`` a line that can't be imported is left out and reported with its reason
instead (``ImportReport.skipped_invalid``),
as the demonstrations importer does: Anthropic's own files hold a few such lines (an empty last
assistant turn, chosen and rejected that differ before it). A task already in the project
(same context and answers, see ``ranking_task_content_hash``), or repeated in the file, is skipped
and reported, so importing a file twice creates its tasks once.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F
from django.utils import timezone

from annotation.models import Project
from audit.models import AuditAction
from audit.services import audit_record
from config.exceptions import ApplicationError, ConflictError
from config.text import SURROGATE_ESCAPE, lone_surrogate_refusal
from ranking.models import (
    MAX_RESPONSES,
    MIN_RESPONSES,
    Ranking,
    RankingTask,
    Response,
    TaskSource,
    TaskStatus,
    context_validate,
)
from ranking.services.orderings import OrderingError, ordering_check, ordering_normalise
from ranking.services.stats import imported_rankings_counted
from ranking.services.tasks import HUMAN_GENERATOR, ranking_tasks_save, response_author_resolve

FORMAT_RANKING_JSONL = "ranking-jsonl"
FORMAT_HH_RLHF = "hh-rlhf"
FORMATS = (FORMAT_RANKING_JSONL, FORMAT_HH_RLHF)
MAX_REPORTED_ERRORS = 20
BATCH_LINES = 2000  # lines validated, checked for duplicates and written together
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
    lines_read: int = 0  # lines of the file read so far, blank ones included (the progress of a job)

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


@dataclass
class _Line:
    """A valid line, ready to store: a task, its answers and (hh-rlhf) the preference it carries."""

    number: int
    context: list
    answers: list[tuple[str, str, int | None]]  # (content, generator, author id), in the order given
    gold_positions: list[list[int]] | None = None  # the gold ranking in answer positions, best first
    carries_preference: bool = False  # hh-rlhf: the first answer was chosen over the second
    import_hash: str = ""


def ranking_tasks_import(
    *, project: Project, file: Iterable[bytes | str], format: str, created_by: AbstractBaseUser | None, size: int = 0,
    skip_invalid: bool = False, progress: Callable[[int], None] | None = None, keep_task_ids: bool = True,
) -> ImportReport:
    """Import every line of ``file`` as a ranking task of ``project``, or nothing when any line is wrong.

    ``hh-rlhf`` lines become K=2 tasks carrying their human preference as an imported ranking (it
    counts as one of the task's rankings). Lines whose chosen and rejected answers are identical
    carry no preference and are skipped (listed in the report). A task whose context and answers
    are already in the project, or earlier in the file, is skipped and its line reported as a duplicate.
    With ``skip_invalid`` a line that can't be imported is skipped and reported with its reason
    instead of refusing the file (bytes that aren't UTF-8 still refuse it: that is the wrong file).
    ``progress(lines_read)`` is called every ``BATCH_LINES`` lines read and at the end;
    ``keep_task_ids=False`` leaves the new tasks' ids out of the report (a million are no use to a job's page).
    """
    if format not in FORMATS:
        raise ApplicationError(f"format must be one of {', '.join(FORMATS)}; got {format!r}.")
    if project.is_archived:
        raise ApplicationError("The project is archived: it takes no new tasks.")
    if size > settings.IMPORT_MAX_BYTES:
        raise ApplicationError(f"The file is larger than the import limit of {settings.IMPORT_MAX_BYTES} bytes.")
    report = ImportReport(format=format)
    store = _TaskStore(project=project, created_by=created_by, format=format, report=report,
                       keep_task_ids=keep_task_ids)
    errors: list[str] = []
    total_errors = 0
    authors: dict[str, int | None] = {}  # "human:NAME" generator -> user id, looked up once per name
    probe = Response()

    def line_invalid(number: int, reason: str) -> None:
        nonlocal total_errors
        if skip_invalid:
            report.invalid_lines.append({"line": number, "reason": reason})
            return
        total_errors += 1
        if len(errors) < MAX_REPORTED_ERRORS:
            errors.append(f"line {number}: {reason}")

    try:
        with transaction.atomic():
            try:
                try:
                    reported = 0
                    for number, text in _lines(file):
                        if progress is not None and number - 1 - reported >= BATCH_LINES:
                            reported = number - 1  # also while a refused file is only being read to the end
                            progress(reported)
                        report.lines_read = number
                        try:
                            line = _line_parse(text, number=number, format=format, created_by=created_by,
                                               authors=authors, report=report, probe=probe)
                        except json.JSONDecodeError as error:
                            line_invalid(number, f"not valid JSON ({error.msg})")
                            continue
                        except RecursionError:
                            line_invalid(number, "not valid JSON (nested too deeply)")
                            continue
                        except (ValueError, ValidationError) as error:
                            messages = error.messages if isinstance(error, ValidationError) else [str(error)]
                            line_invalid(number, " ".join(messages))
                            continue
                        if line is not None and not total_errors:  # after an error the file is only read, not written
                            store.add(line)
                except ValueError as error:  # undecodable bytes: stop at once
                    raise ImportRefused([str(error)], total=1) from None
                if total_errors:
                    raise ImportRefused(errors, total=total_errors)
                store.finish()
                if not store.seen and report.invalid_lines:
                    first = report.invalid_lines[0]
                    raise ApplicationError(
                        f"The file holds no valid tasks to import: {len(report.invalid_lines)} line(s) are invalid. "
                        f"First: line {first['line']}: {first['reason']}"
                    )
                if not store.seen:
                    raise ApplicationError("The file holds no tasks to import.")
                imported_rankings_counted(project_id=project.pk, count=report.rankings_imported)  # quality page
                audit_record(actor=created_by, action=AuditAction.IMPORT, project=project, details={
                    "file": getattr(file, "name", ""), "format": format, "tasks_created": report.tasks_created,
                    "rankings_imported": report.rankings_imported, "duplicates": len(report.duplicate_lines)})
            finally:
                store.close()  # a COPY still running ends before the transaction does
    except IntegrityError as error:  # a concurrent import added some of the same tasks meanwhile
        raise ConflictError("Another import added some of these tasks at the same time; import again.") from error
    if progress is not None:
        progress(report.lines_read)
    return report


def _line_parse(
    text: str, *, number: int, format: str, created_by, authors: dict, report: ImportReport, probe: Response,
) -> _Line | None:
    """Validate one line; return what to store, or None for a line skipped on purpose. Raise ValueError/ValidationError."""
    row = json.loads(text)
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    # "\ud800" parses to a lone surrogate, which is not text and can't be stored: refused naming where
    refusal = lone_surrogate_refusal(row) if SURROGATE_ESCAPE.search(text) else None
    if refusal:
        raise ValueError(refusal.rstrip("."))
    if format == FORMAT_HH_RLHF:
        context, chosen, rejected = _hh_line(row)
        if chosen == rejected:
            report.skipped_lines.append({"line": number, "reason": "chosen and rejected are identical"})
            return None
        answers = [(chosen, HH_GENERATOR, None), (rejected, HH_GENERATOR, None)]
        line = _Line(number=number, context=context, answers=answers, carries_preference=True)
    else:
        line = _ranking_jsonl_line(row, number=number, created_by=created_by, authors=authors)
    _line_check(line, probe=probe)
    return line


def _ranking_jsonl_line(row: dict, *, number: int, created_by, authors: dict) -> _Line:
    responses = row.get("responses")
    if not isinstance(responses, list):
        raise ValueError('"responses" must be a list of {"content", "generator"} objects')
    answers = []
    for index, response in enumerate(responses):
        if isinstance(response, str):
            response = {"content": response}
        if not isinstance(response, dict) or not isinstance(response.get("content"), str):
            raise ValueError(f'responses[{index}] must be an object with a "content" string')
        generator = response.get("generator") or ""
        if not isinstance(generator, str):
            raise ValueError(f"responses[{index}].generator must be a string")
        author_id = None
        if generator == HUMAN_GENERATOR or generator.startswith(HUMAN_GENERATOR + ":"):
            if generator not in authors:
                author = response_author_resolve(generator=generator, creator=created_by)
                authors[generator] = author.pk if author is not None else None
            author_id = authors[generator]
        answers.append((response["content"], generator[:200], author_id))
    is_gold = row.get("is_gold", False)
    if not isinstance(is_gold, bool):
        raise ValueError('"is_gold" must be true or false')
    gold_order = row.get("gold_order")
    if is_gold and gold_order is None:
        raise ValidationError("A gold task needs gold_order: its known ranking, in answer positions (0-based).")
    line = _Line(number=number, context=row.get("context"), answers=answers)
    if gold_order is not None:
        try:
            line.gold_positions = ordering_check(gold_order, item_ids=range(len(answers)))
        except OrderingError as error:
            raise ValidationError(f"gold_order (answer positions, 0-based): {error}") from None
    return line


def _line_check(line: _Line, *, probe: Response) -> None:
    """The checks ``ranking_task_build`` makes, without building model instances (a million lines):
    ``probe`` is one unsaved answer whose ``clean`` checks each text in turn."""
    if not MIN_RESPONSES <= len(line.answers) <= MAX_RESPONSES:
        raise ValidationError(f"A ranking task needs {MIN_RESPONSES} to {MAX_RESPONSES} answers; got {len(line.answers)}.")
    context_validate(line.context)
    for position, (content, _, _) in enumerate(line.answers):
        probe.content = content
        try:
            probe.clean()
        except ValidationError as error:
            raise ValidationError(f"responses[{position}]: {' '.join(error.messages)}") from None


class _TaskStore:
    """Write valid lines in batches inside the import's transaction, skipping duplicates; counts what it wrote.

    On PostgreSQL a batch's COPY runs on a helper thread while the next batch is read and checked:
    the database works on one core while Python parses on the other. The batches stay in order (the
    next batch's duplicate lookup waits for the COPY before it), and ``close`` waits for the last one
    before the transaction commits or rolls back.
    """

    def __init__(self, *, project: Project, created_by, format: str, report: ImportReport, keep_task_ids: bool):
        self.project, self.created_by, self.report, self.keep_task_ids = project, created_by, report, keep_task_ids
        self.source = TaskSource.HH_RLHF if format == FORMAT_HH_RLHF else TaskSource.RANKING_JSONL
        self.pending: list[_Line] = []
        self.seen = 0  # valid lines given, duplicates included
        self.now = timezone.now()
        self.copying: Future | None = None
        self.copier = ThreadPoolExecutor(max_workers=1) if connection.vendor == "postgresql" else None
        self.immediate = False

    def add(self, line: _Line) -> None:
        """Queue a line; write the batch once it is full."""
        self.pending.append(line)
        self.seen += 1
        if len(self.pending) >= BATCH_LINES:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        self._copy_wait()  # the previous batch must be in before its tasks count as duplicates
        fresh = self._duplicates_drop(self.pending)
        self.pending = []
        if not fresh:
            return
        if self.copier is not None:
            self._foreign_keys_checked_as_written()
            task_ids, rankings, statements = _copy_prepare(fresh, project=self.project, created_by=self.created_by,
                                                           source=self.source, now=self.now)
            # the import thread's own connection (``connection`` is per thread): the COPY joins its transaction
            self.copying = self.copier.submit(_copy_run, connections[DEFAULT_DB_ALIAS], statements)
        else:
            task_ids, rankings = _orm_save(fresh, project=self.project, created_by=self.created_by, source=self.source)
        self.report.tasks_created += len(task_ids)
        self.report.rankings_imported += rankings
        if self.keep_task_ids:
            self.report.task_ids.extend(task_ids)

    def finish(self) -> None:
        """Write what is left and wait until it is in."""
        self.flush()
        self._copy_wait()
        if self.immediate:
            with connection.cursor() as cursor:  # the rest of an enclosing transaction gets Django's default back
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")

    def close(self) -> None:
        """Wait for a COPY still running (its error, if any, is the caller's to raise) and stop the helper thread."""
        if self.copier is not None:
            if self.copying is not None:
                wait([self.copying])
            self.copier.shutdown(wait=True)

    def _foreign_keys_checked_as_written(self) -> None:
        """Django's foreign keys are DEFERRABLE INITIALLY DEFERRED on PostgreSQL: a million tasks' would all be
        checked at COMMIT (a minute with the bar at its end, and the queue in the server's memory); checked
        as each batch is written instead, until ``finish`` defers them again (a failure rolls it all back)."""
        if not self.immediate:
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            self.immediate = True

    def _copy_wait(self) -> None:
        if self.copying is not None:
            copying, self.copying = self.copying, None
            copying.result()  # raises the COPY's error here, in the import's thread

    def _duplicates_drop(self, lines: list[_Line]) -> list[_Line]:
        """Hash each line; return those neither in the project (earlier batches included) nor earlier in this batch.

        The unique constraint on (project, import_hash) refuses a task that a concurrent import
        saves between this check and our insert.
        """
        for line in lines:
            line.import_hash = ranking_task_content_hash(context=line.context, answers=[a[0] for a in line.answers])
        # the explicit `import_hash <> ''` lets PostgreSQL use the partial unique index for a long IN list
        existing = set(
            RankingTask.objects.filter(project=self.project, import_hash__in=[line.import_hash for line in lines])
            .exclude(import_hash="").values_list("import_hash", flat=True)
        )
        fresh = []
        for line in lines:
            if line.import_hash in existing:
                self.report.duplicate_lines.append(line.number)
            else:
                existing.add(line.import_hash)
                fresh.append(line)
        return fresh


def _completes_with_one_ranking(project: Project) -> bool:
    return project.rankings_per_task <= 1


def _copy_prepare(
    lines: list[_Line], *, project: Project, created_by, source: str, now: datetime,
) -> tuple[list[int], int, list[tuple[str, io.BytesIO]]]:
    """PostgreSQL: the COPY statements that write these tasks, answers and imported rankings (for ``_copy_run``),
    with the new tasks' ids (drawn from the tables' sequences, so rows can name each other) and the rankings' count."""
    task_ids = _ids_reserve(RankingTask, len(lines))
    answer_ids = iter(_ids_reserve(Response, sum(len(line.answers) for line in lines)))
    complete = _completes_with_one_ranking(project)
    counted = _has_field(RankingTask, "rankings_count")  # kept on the row for `next` (when the model has it)
    tasks, answers, rankings = [], [], []
    for line, task_id in zip(lines, task_ids, strict=True):
        ids = [next(answer_ids) for _ in line.answers]
        for position, ((content, generator, author_id), answer_id) in enumerate(zip(line.answers, ids, strict=True)):
            answers.append({"id": answer_id, "task_id": task_id, "content": content, "generator": generator,
                            "position": position, "created_by_id": author_id})
        task = {"id": task_id, "project_id": project.pk, "context": line.context, "source": source,
                "import_hash": line.import_hash, "created_by_id": created_by.pk if created_by else None,
                "created_at": now, "is_gold": False, "gold_order": None, "status": TaskStatus.OPEN,
                "consensus_order": None, "consensus_at": None}  # every row names the same columns
        if line.gold_positions is not None:
            task["is_gold"] = True
            task["gold_order"] = ordering_normalise([[ids[p] for p in group] for group in line.gold_positions])
        if counted:
            task["rankings_count"] = 1 if line.carries_preference else 0
        if line.carries_preference:
            order = [[ids[0]], [ids[1]]]
            rankings.append({"task_id": task_id, "is_imported": True, "order": order, "created_at": now})
            if complete:
                task.update(consensus_order=order, status=TaskStatus.COMPLETE, consensus_at=now)
        tasks.append(task)
    statements = [_copy_statement(RankingTask, tasks), _copy_statement(Response, answers)]
    if rankings:
        statements.append(_copy_statement(Ranking, rankings))
    return task_ids, len(rankings), statements


def _orm_save(lines: list[_Line], *, project: Project, created_by, source: str) -> tuple[list[int], int]:
    """Other databases (the embedded SQLite): bulk_create through the models, as tasks made one by one are."""
    user_ids = {author_id for line in lines for _, _, author_id in line.answers if author_id is not None}
    users = {user.pk: user for user in get_user_model().objects.filter(pk__in=user_ids)}
    built = []
    for line in lines:
        task = RankingTask(project=project, context=line.context, source=source, created_by=created_by,
                           import_hash=line.import_hash, is_gold=line.gold_positions is not None,
                           gold_order=line.gold_positions)
        answers = [Response(task=task, content=content, generator=generator, position=position,
                            created_by=users.get(author_id))
                   for position, (content, generator, author_id) in enumerate(line.answers)]
        built.append((task, answers))
    tasks = ranking_tasks_save(built=built)
    carrying = [item for item, line in zip(built, lines, strict=True) if line.carries_preference]
    return [task.pk for task in tasks], _imported_preferences_save(project=project, tasks=carrying)


def _has_field(model: type[models.Model], name: str) -> bool:
    return any(f.attname == name for f in model._meta.concrete_fields)


def _ids_reserve(model: type[models.Model], count: int) -> list[int]:
    """Draw ``count`` ids from the model's id sequence (identity column), so rows can name each other before COPY."""
    if not count:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [model._meta.db_table, model._meta.pk.column, count],
        )
        return [row[0] for row in cursor.fetchall()]


def _copy_escape(text: str) -> str:
    """Text in COPY's text format: backslash, tab and line breaks escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _copy_encoder(model_field: models.Field) -> Callable[[object], str]:
    """How one column's values are written in COPY's text format (\\N for NULL)."""
    if isinstance(model_field, models.JSONField):
        # JSON text escapes its own control characters: only backslashes need doubling
        return lambda v: "\\N" if v is None else json.dumps(v, ensure_ascii=False).replace("\\", "\\\\")
    if isinstance(model_field, models.BooleanField):
        return lambda v: "\\N" if v is None else ("t" if v else "f")
    if isinstance(model_field, models.DateTimeField):
        return lambda v: "\\N" if v is None else v.isoformat()
    if isinstance(model_field, models.IntegerField | models.AutoField | models.ForeignKey | models.FloatField):
        return lambda v: "\\N" if v is None else str(v)
    return lambda v: "\\N" if v is None else _copy_escape(str(v))


def _copy_statement(model: type[models.Model], rows: list[dict]) -> tuple[str, io.BytesIO]:
    """A COPY of rows into the model's table: given values, and each other column's default (its database
    default when it has one, else the model's), as ``Model.objects.create`` would fill them."""
    names = list(rows[0])  # every row names the same columns
    by_attname = {f.attname: f for f in model._meta.concrete_fields}
    fields = [by_attname[name] for name in names]
    encoders = [_copy_encoder(f) for f in fields]
    defaulted, defaults = [], []
    for model_field in model._meta.concrete_fields:
        if model_field.attname in names or model_field.primary_key or model_field.db_default is not models.NOT_PROVIDED:
            continue  # given, or the database fills it
        if getattr(model_field, "auto_now_add", False) or getattr(model_field, "auto_now", False):
            value = timezone.now()
        else:
            value = model_field.get_default()  # the default, else "" for text and None for the rest
        defaulted.append(model_field)
        defaults.append(_copy_encoder(model_field)(value))
    tail = "".join("\t" + text for text in defaults) + "\n"
    columns = list(zip(names, encoders, strict=True))
    text = "".join(["\t".join([encode(row[name]) for name, encode in columns]) + tail for row in rows])
    quote = connection.ops.quote_name
    column_list = ", ".join(quote(f.column) for f in [*fields, *defaulted])
    return f"COPY {quote(model._meta.db_table)} ({column_list}) FROM STDIN", io.BytesIO(text.encode())


def _copy_run(database: BaseDatabaseWrapper, statements: list[tuple[str, io.BytesIO]]) -> None:
    """Run COPY statements on the import's connection (inside its transaction) from the helper thread.

    The driver's connection serialises its use, and this thread is the only one using it while a
    COPY runs (the import's thread waits for it before its next query); database errors come out as
    Django's, as from a cursor.
    """
    with database.wrap_database_errors:
        with database.connection.cursor() as cursor:
            for statement, buffer in statements:
                cursor.copy_expert(statement, buffer)


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
