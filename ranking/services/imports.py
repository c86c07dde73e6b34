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
    return _content_hash_and_context_json(context, answers)[0]


def _content_hash_and_context_json(context: list[dict], answers: Iterable[str]) -> tuple[str, str]:
    """Return (``ranking_task_content_hash``, the context as JSON text): the import writes the same text it hashed.

    ``json.dumps([a, b])`` is ``"[" + dumps(a) + ", " + dumps(b) + "]"``, so the context is serialised once.
    """
    context_json = json.dumps(context, ensure_ascii=False, sort_keys=True)
    payload = f"[{context_json}, {json.dumps(sorted(answers), ensure_ascii=False)}]"
    return hashlib.sha256(payload.encode()).hexdigest(), context_json


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
    context_json: str = ""  # the context as the JSON text that was hashed (jsonb keeps no key order)


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

    On PostgreSQL the import's thread parses, hashes and turns each batch into COPY text (ids drawn
    from the sequences on a connection of its own: sequences are outside transactions), while a
    helper thread writes the batch before it on the import's connection: it looks its hashes up
    among the project's tasks (earlier batches included), leaves those lines out as duplicates and
    COPYs the rest. So Python works on one core while the database works on the other, and the
    import's connection is never waited for by the parsing. Batches stay in order (one helper
    thread, at most one batch waiting), and ``close`` waits for the last one before the transaction
    commits or rolls back.
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
        self.ids_connection = None  # the driver's connection that draws ids, opened on first use

    def add(self, line: _Line) -> None:
        """Queue a line; write the batch once it is full."""
        self.pending.append(line)
        self.seen += 1
        if len(self.pending) >= BATCH_LINES:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        lines = self._repeats_in_batch_drop(self.pending)
        self.pending = []
        if self.copier is None:
            self._copy_wait()
            fresh = self._duplicates_drop(lines)
            task_ids, rankings = _orm_save(fresh, project=self.project, created_by=self.created_by, source=self.source)
            self._count(task_ids, rankings, [])
            return
        self._foreign_keys_checked_as_written()
        batch = _copy_prepare(lines, project=self.project, created_by=self.created_by, source=self.source,
                              now=self.now, ids_cursor=self._ids_cursor)
        self._copy_wait()  # the batch before must be in before this one's tasks are looked up as duplicates
        # the import thread's own connection (``connection`` is per thread): the COPY joins its transaction
        self.copying = self.copier.submit(_batch_write, connections[DEFAULT_DB_ALIAS], self.project.pk, batch)

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
        if self.ids_connection is not None:
            self.ids_connection.close()

    def _ids_cursor(self):
        """A cursor on the connection that draws ids: the driver's own (autocommit), with the database's settings.

        Not one of Django's ``connections``: nothing but ``nextval`` runs on it, outside any transaction.
        """
        if self.ids_connection is None:
            self.ids_connection = connection.get_new_connection(connection.get_connection_params())
            self.ids_connection.autocommit = True
        return self.ids_connection.cursor()

    def _count(self, task_ids: list[int], rankings: int, duplicate_lines: list[int]) -> None:
        self.report.tasks_created += len(task_ids)
        self.report.rankings_imported += rankings
        self.report.duplicate_lines.extend(duplicate_lines)
        if self.keep_task_ids:
            self.report.task_ids.extend(task_ids)

    def _foreign_keys_checked_as_written(self) -> None:
        """Django's foreign keys are DEFERRABLE INITIALLY DEFERRED on PostgreSQL: a million tasks' would all be
        checked at COMMIT (a minute with the bar at its end, and the queue in the server's memory); checked
        as each batch is written instead, until ``finish`` defers them again (a failure rolls it all back)."""
        if not self.immediate:
            self._copy_wait()  # the import's connection is the helper's while it writes
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            self.immediate = True

    def _copy_wait(self) -> None:
        if self.copying is not None:
            copying, self.copying = self.copying, None
            self._count(*copying.result())  # raises the COPY's error here, in the import's thread

    def _repeats_in_batch_drop(self, lines: list[_Line]) -> list[_Line]:
        """Hash each line; report and leave out a line whose task came earlier in this batch.

        Earlier batches are in the database by the time this one is looked up there (``_batch_write``),
        so a file's repeats are found without keeping a million hashes in memory.
        """
        first: set[str] = set()
        kept = []
        for line in lines:
            line.import_hash, line.context_json = _content_hash_and_context_json(line.context, [a[0] for a in line.answers])
            if line.import_hash in first:
                self.report.duplicate_lines.append(line.number)
            else:
                first.add(line.import_hash)
                kept.append(line)
        return kept

    def _duplicates_drop(self, lines: list[_Line]) -> list[_Line]:
        """Other databases: return the lines whose task the project doesn't have yet (earlier batches included).

        The unique constraint on (project, import_hash) refuses a task that a concurrent import
        saves between this check and our insert.
        """
        existing = _hashes_existing(project_id=self.project.pk, hashes=[line.import_hash for line in lines])
        fresh = []
        for line in lines:
            if line.import_hash in existing:
                self.report.duplicate_lines.append(line.number)
            else:
                fresh.append(line)
        return fresh


def _completes_with_one_ranking(project: Project) -> bool:
    return project.rankings_per_task <= 1


def _hashes_existing(*, project_id: int, hashes: list[str]) -> set[str]:
    """Which of these content hashes the project's tasks already have (the ORM's way; see ``_batch_write``)."""
    return set(RankingTask.objects.filter(project_id=project_id, import_hash__in=hashes)
               .exclude(import_hash="").values_list("import_hash", flat=True))


@dataclass
class _CopyBatch:
    """A batch of lines as COPY text, one entry per line in each list, for ``_batch_write``."""

    numbers: list[int]  # line numbers in the file
    hashes: list[str]  # content hashes, to look up among the project's tasks
    task_ids: list[int]
    task_rows: list[str]
    answer_rows: list[str]  # each line's answers, one row each
    ranking_rows: list[str]  # each line's imported ranking, or ""
    sql: tuple[str, str, str]  # the COPY statements of tasks, answers and rankings


def _copy_prepare(
    lines: list[_Line], *, project: Project, created_by, source: str, now: datetime, ids_cursor: Callable,
) -> _CopyBatch:
    """PostgreSQL: the COPY text of these lines' tasks, answers and imported rankings, line by line (for
    ``_batch_write``), with ids drawn from the tables' sequences so rows can name each other.

    Rows are written as COPY text directly, a few string joins per line (a million lines: no dict or
    model instance per row); the columns the import doesn't set get their defaults from ``_CopyTable``.
    """
    with ids_cursor() as cursor:
        task_ids = _ids_reserve(cursor, RankingTask, len(lines))
        answer_ids = _ids_reserve(cursor, Response, sum(len(line.answers) for line in lines))
    complete = _completes_with_one_ranking(project)
    counted = _has_field(RankingTask, "rankings_count")  # kept on the row for `next` (when the model has it)
    task_columns = ["id", "project_id", "context", "source", "import_hash", "created_by_id", "created_at", "is_gold",
                    "gold_order", "status", "consensus_order", "consensus_at", *(["rankings_count"] if counted else [])]
    task_table = _CopyTable(RankingTask, task_columns)
    answer_table = _CopyTable(Response, ["id", "task_id", "content", "generator", "position", "created_by_id"])
    ranking_table = _CopyTable(Ranking, ["task_id", "is_imported", "order", "created_at"])
    # the same in every row of the batch
    stamp = now.isoformat()
    task_head = f"\t{project.pk}\t"
    task_middle = f"\t{_copy_escape(source)}\t"
    creator = f"\t{created_by.pk if created_by else NULL}\t{stamp}\t"
    preference_count = "\t1" if counted else ""
    no_preference_count = "\t0" if counted else ""
    task_rows, answer_rows, ranking_rows = [], [], []
    next_answer = 0
    for line, task_id in zip(lines, task_ids, strict=True):
        ids = answer_ids[next_answer:next_answer + len(line.answers)]
        next_answer += len(ids)
        task_text = str(task_id)
        answer_head = f"\t{task_text}\t"
        answer_rows.append("".join([
            f"{answer_id}{answer_head}{_copy_escape(content)}\t{_copy_escape(generator)}\t{position}\t"
            f"{NULL if author_id is None else author_id}{answer_table.tail}"
            for position, ((content, generator, author_id), answer_id) in enumerate(zip(line.answers, ids, strict=True))
        ]))
        gold = "f\t" + NULL
        if line.gold_positions is not None:
            gold = "t\t" + _copy_json(ordering_normalise([[ids[p] for p in group] for group in line.gold_positions]))
        consensus = f"{TaskStatus.OPEN.value}\t{NULL}\t{NULL}"
        count, ranking = no_preference_count, ""
        if line.carries_preference:
            order = _copy_json([[ids[0]], [ids[1]]])
            ranking = f"{task_text}\tt\t{order}\t{stamp}{ranking_table.tail}"
            count = preference_count
            if complete:
                consensus = f"{TaskStatus.COMPLETE.value}\t{order}\t{stamp}"
        context = (line.context_json or json.dumps(line.context, ensure_ascii=False)).replace("\\", "\\\\")
        task_rows.append(f"{task_text}{task_head}{context}{task_middle}{line.import_hash}{creator}{gold}\t{consensus}"
                         f"{count}{task_table.tail}")
        ranking_rows.append(ranking)
    return _CopyBatch(numbers=[line.number for line in lines], hashes=[line.import_hash for line in lines],
                      task_ids=task_ids, task_rows=task_rows, answer_rows=answer_rows, ranking_rows=ranking_rows,
                      sql=(task_table.sql, answer_table.sql, ranking_table.sql))


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


def _ids_reserve(cursor, model: type[models.Model], count: int) -> list[int]:
    """Draw ``count`` ids from the model's id sequence (identity column), so rows can name each other before COPY."""
    if not count:
        return []
    # one text value, not a row per id (thousands of rows cost the driver more than the sequence); the
    # sequence's name looked up once (a subquery), not per row (a catalog lookup: 8 times the nextval)
    cursor.execute(
        "SELECT string_agg(nextval((SELECT pg_get_serial_sequence(%s, %s))::regclass)::text, ',') "
        "FROM generate_series(1, %s)",
        [model._meta.db_table, model._meta.pk.column, count],
    )
    return [int(value) for value in cursor.fetchone()[0].split(",")]


NULL = "\\N"  # NULL in COPY's text format


def _copy_escape(text: str) -> str:
    """Text in COPY's text format: backslash, tab and line breaks escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _copy_json(value: object) -> str:
    """A JSON value in COPY's text format (JSON text escapes its own control characters: only backslashes double)."""
    return json.dumps(value, ensure_ascii=False).replace("\\", "\\\\")


def _copy_default(model_field: models.Field) -> str:
    """A column's default in COPY's text format, as ``Model.objects.create`` would fill it."""
    if getattr(model_field, "auto_now_add", False) or getattr(model_field, "auto_now", False):
        value = timezone.now()
    else:
        value = model_field.get_default()  # the default, else "" for text and None for the rest
    if value is None:
        return NULL
    if isinstance(model_field, models.JSONField):
        return _copy_json(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    return _copy_escape(str(value))


class _CopyTable:
    """A COPY into a model's table: the caller writes the given columns of each row (tab-separated, COPY's text
    format), and ``tail`` appends every other column's default (its database default when it has one, else the model's)."""

    def __init__(self, model: type[models.Model], names: list[str]):
        by_attname = {f.attname: f for f in model._meta.concrete_fields}
        given = [by_attname[name] for name in names]
        defaulted = [
            f for f in model._meta.concrete_fields
            if f.attname not in names and not f.primary_key and f.db_default is models.NOT_PROVIDED
        ]
        self.tail = "".join("\t" + _copy_default(f) for f in defaulted) + "\n"
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in [*given, *defaulted])
        self.sql = f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN"


# Which of a batch's hashes (one array parameter, not thousands) the project's tasks have: one probe of the
# partial unique index per hash (`import_hash <> ''` lets PostgreSQL use it). The LATERAL ... LIMIT 1 keeps it
# a probe per hash whatever the statistics say: the tasks this import wrote are in no statistics until it
# commits, and with `project_id = ANY/IN` the planner read every task of the project per batch instead (a
# bitmap scan of the project's index, all rows filtered: 0.2 s a batch at 400,000 tasks, quadratic in the file).
_HASHES_EXISTING_SQL = """
    SELECT h.import_hash FROM unnest(%s::varchar[]) AS h(import_hash)
    CROSS JOIN LATERAL (
        SELECT 1 FROM {table} t WHERE t.project_id = %s AND t.import_hash = h.import_hash AND t.import_hash <> ''
        LIMIT 1
    ) AS found
"""


def _batch_write(database: BaseDatabaseWrapper, project_id: int, batch: _CopyBatch) -> tuple[list[int], int, list[int]]:
    """Write a batch on the import's connection (inside its transaction) from the helper thread: leave out the
    lines whose task the project already has, COPY the rest. Return (task ids written, rankings, duplicate lines).

    The driver's connection serialises its use, and this thread is the only one using it meanwhile
    (the import's thread waits for it before its next query); database errors come out as Django's,
    as from a cursor. The unique constraint on (project, import_hash) refuses a task that a
    concurrent import saves between the lookup and the COPY.
    """
    with database.wrap_database_errors:
        with database.connection.cursor() as cursor:
            cursor.execute(_HASHES_EXISTING_SQL.format(table=database.ops.quote_name(RankingTask._meta.db_table)),
                           [batch.hashes, project_id])
            existing = {row[0] for row in cursor.fetchall()}
            kept = [index for index, content_hash in enumerate(batch.hashes) if content_hash not in existing]
            duplicates = [batch.numbers[index] for index, content_hash in enumerate(batch.hashes) if content_hash in existing]
            rankings = [batch.ranking_rows[index] for index in kept if batch.ranking_rows[index]]
            for sql, rows in ((batch.sql[0], [batch.task_rows[index] for index in kept]),
                              (batch.sql[1], [batch.answer_rows[index] for index in kept]), (batch.sql[2], rankings)):
                if rows:
                    cursor.copy_expert(sql, io.BytesIO("".join(rows).encode()))
    return [batch.task_ids[index] for index in kept], len(rankings), duplicates


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
