"""Import prompts and demonstrations from files: all or nothing, streamed line by line.

Formats:
- ``prompts-jsonl``: one ``{"prompt": "..."}`` (or ``{"text": "..."}``) per line.
- ``prompts-csv``: a header row with a ``prompt`` (or ``text``) column.
- ``messages-jsonl``: one ``{"messages": [{"role", "content"}, ...]}`` per line (TRL's format).
- ``hh-rlhf``: Anthropic HH-RLHF lines; the ``chosen`` transcript becomes a demonstration.

A bad line rejects the whole file with its line number and the reason; prompts or conversations
already in the project, or repeated in the file, are skipped and reported. A file larger than
``IMPORT_INLINE_MAX_BYTES`` goes through the worker as an import job (``annotation.services.import_jobs``)
with a progress bar.
"""

import csv
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status

from annotation.models import (
    PROMPT_MAX_CHARS,
    Dialogue,
    DialogueStatus,
    Project,
    Prompt,
    Source,
    Turn,
    TurnRole,
)
from annotation.services.dialogues import (
    TurnData,
    prompt_text_hash,
    turns_check_complete,
    turns_from_dicts,
    turns_hash,
)
from audit.models import AuditAction
from audit.services import audit_record
from config.exceptions import ApplicationError, ConflictError
from config.text import SURROGATE_ESCAPE, lone_surrogate_refusal

PROMPT_FORMATS = ("prompts-jsonl", "prompts-csv")
DIALOGUE_FORMATS = ("messages-jsonl", "hh-rlhf")
FORMATS = PROMPT_FORMATS + DIALOGUE_FORMATS
KINDS = ("prompts", "dialogues")  # what a format holds
IMPORTED_DIALOGUE_STATUSES = (DialogueStatus.ACCEPTED, DialogueStatus.SUBMITTED)  # reviewed already, or to review
BATCH_SIZE = 500
PROGRESS_EVERY_LINES = 2000  # how often ``progress`` hears how many lines were read
REPORTED_LINES_MAX = 100  # line numbers listed in a report (the counts are always complete)
_HH_MARKER = re.compile(r"\n\n(Human|Assistant): ")


class ImportLineError(ApplicationError):
    """A line the importer can't take: the whole file is refused."""

    def __init__(self, line: int, reason: str):
        super().__init__(f"line {line}: {reason}", extra={"line": line})
        self.line, self.reason = line, reason


class ImportTooLargeError(ApplicationError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


@dataclass
class ImportReport:
    format: str
    kind: str  # "prompts" or "dialogues"
    rows: int = 0  # non-blank lines read
    created: int = 0
    duplicate_lines: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), with skip_invalid only

    def as_dict(self) -> dict:
        return {
            "format": self.format,
            "kind": self.kind,
            "rows": self.rows,
            "created": self.created,
            "duplicates": {
                "count": len(self.duplicate_lines),
                "lines": sorted(self.duplicate_lines)[:REPORTED_LINES_MAX],
            },
            "skipped": {
                "count": len(self.skipped),
                "lines": [
                    {"line": line, "reason": reason} for line, reason in self.skipped[:REPORTED_LINES_MAX]
                ],
            },
        }


def project_import(
    *,
    project: Project,
    user: AbstractBaseUser,
    file: UploadedFile,
    format: str,
    skip_invalid: bool = False,
    dialogue_status: str = DialogueStatus.ACCEPTED,
    max_bytes: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import ``file`` into ``project`` in one transaction and report what was created and skipped.

    With ``skip_invalid`` a bad line is skipped and reported instead of refusing the file.
    Dialogue formats create accepted demonstrations, or submitted ones (``dialogue_status``) to review.
    ``max_bytes`` (``IMPORT_MAX_BYTES`` by default) refuses a larger file; ``progress(lines_read)`` is
    called every ``PROGRESS_EVERY_LINES`` lines (an import job's progress bar).
    """
    if format not in FORMATS:
        raise ApplicationError(f"format must be one of {', '.join(FORMATS)}.")
    if dialogue_status not in IMPORTED_DIALOGUE_STATUSES:
        raise ApplicationError("Imported dialogues are either accepted or submitted for review.")
    limit = max_bytes or settings.IMPORT_MAX_BYTES
    if file.size is not None and file.size > limit:
        raise ImportTooLargeError(
            f"The file has {file.size:,} bytes; imports are limited to {limit:,} bytes."
        )
    if project.is_archived:
        raise ApplicationError("This project is archived.")
    report = ImportReport(format=format, kind="prompts" if format in PROMPT_FORMATS else "dialogues")
    file.seek(0)
    items = {
        "prompts-jsonl": _read_prompts_jsonl,
        "prompts-csv": _read_prompts_csv,
        "messages-jsonl": _read_messages_jsonl,
        "hh-rlhf": _read_hh_rlhf,
    }[format](file)
    if progress is not None:
        items = _reporting_progress(items, progress)
    try:
        with transaction.atomic():
            if report.kind == "prompts":
                _store_prompts(
                    project=project, user=user, items=items, report=report, skip_invalid=skip_invalid
                )
            else:
                _store_dialogues(
                    project=project,
                    user=user,
                    items=items,
                    report=report,
                    skip_invalid=skip_invalid,
                    dialogue_status=dialogue_status,
                )
            audit_record(actor=user, action=AuditAction.IMPORT, project=project, details={
                "file": file.name, "format": format, "rows": report.rows, "created": report.created})
    except IntegrityError as exc:  # a concurrent import or edit added the same rows meanwhile
        raise ConflictError(
            "Another change added some of these rows at the same time; import again."
        ) from exc
    if report.rows == 0:
        raise ApplicationError(f"Nothing to import: the file holds no {report.kind}.")
    return report


def _reporting_progress(items: Iterator[tuple[int, object]], progress: Callable[[int], None]):
    """Pass the items on, telling ``progress`` how many lines were read every ``PROGRESS_EVERY_LINES``."""
    reported = 0
    for number, value in items:
        if number - 1 - reported >= PROGRESS_EVERY_LINES:
            reported = number - 1
            progress(reported)
        yield number, value


# --- readers: yield (line number, parsed value, error or None) -------------------------------------------


def _json_lines(file: UploadedFile) -> Iterator[tuple[int, object]]:
    for number, raw in enumerate(file, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportLineError(number, "not UTF-8 text.") from exc
        if number == 1:
            text = text.lstrip("\ufeff")
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, _Invalid(f"not valid JSON ({exc.msg} at column {exc.colno}).")
        except ValueError as exc:  # e.g. an integer of more than 4,300 digits
            yield number, _Invalid(f"not valid JSON ({exc}).")
        except RecursionError:
            yield number, _Invalid("not valid JSON (nested too deeply).")
        else:
            refusal = lone_surrogate_refusal(value) if SURROGATE_ESCAPE.search(text) else None
            yield number, value if refusal is None else _Invalid(refusal)


@dataclass(frozen=True)
class _Invalid:
    reason: str


def _read_prompts_jsonl(file: UploadedFile):
    for number, value in _json_lines(file):
        if isinstance(value, _Invalid):
            yield number, value
        elif not isinstance(value, dict):
            yield number, _Invalid('expected an object such as {"prompt": "..."}.')
        else:
            text = value.get("prompt", value.get("text"))
            yield number, text if isinstance(text, str) else _Invalid('expected a "prompt" string.')


def _text_lines(file: UploadedFile) -> Iterator[str]:
    """Decode the file line by line, so that bytes that aren't UTF-8 are reported on their own line."""
    for number, raw in enumerate(file, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportLineError(number, "not UTF-8 text (save the file as UTF-8).") from exc
        yield text.lstrip("\ufeff") if number == 1 else text


def _read_prompts_csv(file: UploadedFile):
    reader = csv.reader(_text_lines(file))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ImportLineError(1, f"can't read the header row ({exc}).") from exc
    columns = [name.strip().lower() for name in header or []]
    column = next((columns.index(name) for name in ("prompt", "text") if name in columns), None)
    if column is None:
        raise ImportLineError(1, 'the header row needs a "prompt" (or "text") column.')
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ImportLineError(reader.line_num, f"bad CSV ({exc}).") from exc
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            yield reader.line_num, _Invalid(f"expected {len(columns)} columns, found {len(row)}.")
        else:
            yield reader.line_num, row[column]


def _read_messages_jsonl(file: UploadedFile):
    for number, value in _json_lines(file):
        if isinstance(value, _Invalid):
            yield number, value
        elif not isinstance(value, dict) or "messages" not in value:
            yield (
                number,
                _Invalid('expected an object such as {"messages": [{"role": ..., "content": ...}]}.'),
            )
        else:
            try:
                yield number, turns_from_dicts(value["messages"])
            except ApplicationError as exc:
                yield number, _Invalid(exc.message)


def hh_transcript_to_turns(transcript: str) -> list[TurnData]:
    """Split "\\n\\nHuman: …\\n\\nAssistant: …" into turns; a speaker's consecutive parts become one turn."""
    text = "\n\n" + transcript.lstrip()
    parts = _HH_MARKER.split(text)
    if parts[0].strip() or len(parts) < 3:
        raise ApplicationError(
            'the transcript must start with "Human:" and alternate "Human:" / "Assistant:".'
        )
    turns: list[TurnData] = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = TurnRole.USER if speaker == "Human" else TurnRole.ASSISTANT
        content = content.strip()
        if turns and turns[-1].role == role:  # "Assistant:" inside an answer continues the same answer
            turns[-1] = TurnData(role=role, content=f"{turns[-1].content}\n\n{content}".strip())
        else:
            turns.append(TurnData(role=role, content=content))
    return turns


def turns_to_hh_transcript(turns: list[TurnData]) -> str:
    """Write turns back as an HH-RLHF transcript (a system turn has no HH form and is left out)."""
    speakers = {TurnRole.USER: "Human", TurnRole.ASSISTANT: "Assistant"}
    return "".join(f"\n\n{speakers[t.role]}: {t.content}" for t in turns if t.role in speakers)


def _read_hh_rlhf(file: UploadedFile):
    for number, value in _json_lines(file):
        if isinstance(value, _Invalid):
            yield number, value
        elif not isinstance(value, dict) or not isinstance(value.get("chosen"), str):
            yield number, _Invalid('expected an object with a "chosen" transcript string.')
        else:
            try:
                yield number, hh_transcript_to_turns(value["chosen"])
            except ApplicationError as exc:
                yield number, _Invalid(exc.message)


# --- storing -----------------------------------------------------------------------------------------------


def _refuse_or_skip(*, number: int, reason: str, report: ImportReport, skip_invalid: bool) -> None:
    if not skip_invalid:
        raise ImportLineError(number, reason)
    report.skipped.append((number, reason))


def _store_prompts(*, project, user, items, report: ImportReport, skip_invalid: bool) -> None:
    seen: set[str] = set()
    batch: list[tuple[int, Prompt]] = []
    for number, value in items:
        report.rows += 1
        if isinstance(value, _Invalid):
            _refuse_or_skip(number=number, reason=value.reason, report=report, skip_invalid=skip_invalid)
            continue
        text = value.strip()
        reason = (
            "the prompt is empty."
            if not text
            else f"the prompt has {len(text):,} characters; the limit is {PROMPT_MAX_CHARS:,}."
            if len(text) > PROMPT_MAX_CHARS
            else "the prompt holds a NUL character (\\u0000), which can't be stored."
            if "\x00" in text
            else None
        )
        if reason:
            _refuse_or_skip(number=number, reason=reason, report=report, skip_invalid=skip_invalid)
            continue
        digest = prompt_text_hash(text)
        if digest in seen:
            report.duplicate_lines.append(number)
            continue
        seen.add(digest)
        batch.append(
            (
                number,
                Prompt(project=project, text=text, text_hash=digest, source=Source.IMPORTED, created_by=user),
            )
        )
        if len(batch) >= BATCH_SIZE:
            _flush_prompts(project=project, batch=batch, report=report)
    _flush_prompts(project=project, batch=batch, report=report)


def _flush_prompts(*, project, batch: list[tuple[int, Prompt]], report: ImportReport) -> None:
    existing = set(
        Prompt.objects.filter(project=project, text_hash__in=[p.text_hash for _, p in batch]).values_list(
            "text_hash", flat=True
        )
    )
    report.duplicate_lines.extend(number for number, p in batch if p.text_hash in existing)
    fresh = [p for _, p in batch if p.text_hash not in existing]
    Prompt.objects.bulk_create(fresh)
    report.created += len(fresh)
    batch.clear()


def _store_dialogues(
    *, project, user, items, report: ImportReport, skip_invalid: bool, dialogue_status: str
) -> None:
    seen: set[str] = set()
    batch: list[tuple[int, list[TurnData], Dialogue]] = []
    now = timezone.now()
    for number, value in items:
        report.rows += 1
        if isinstance(value, _Invalid):
            _refuse_or_skip(number=number, reason=value.reason, report=report, skip_invalid=skip_invalid)
            continue
        try:
            turns_check_complete(turns=value)
        except ApplicationError as exc:
            _refuse_or_skip(number=number, reason=exc.message, report=report, skip_invalid=skip_invalid)
            continue
        digest = turns_hash(turns=value)
        if digest in seen:
            report.duplicate_lines.append(number)
            continue
        seen.add(digest)
        accepted = dialogue_status == DialogueStatus.ACCEPTED
        dialogue = Dialogue(
            project=project,
            author=user,
            status=dialogue_status,
            source=Source.IMPORTED,
            import_hash=digest,
            round=0 if accepted else 1,
            submitted_at=now,
            accepted_at=now if accepted else None,
        )
        batch.append((number, value, dialogue))
        if len(batch) >= BATCH_SIZE:
            _flush_dialogues(project=project, batch=batch, report=report)
    _flush_dialogues(project=project, batch=batch, report=report)


def _flush_dialogues(
    *, project, batch: list[tuple[int, list[TurnData], Dialogue]], report: ImportReport
) -> None:
    existing = set(
        Dialogue.objects.filter(
            project=project, import_hash__in=[d.import_hash for _, _, d in batch]
        ).values_list("import_hash", flat=True)
    )
    report.duplicate_lines.extend(number for number, _, d in batch if d.import_hash in existing)
    fresh = [(turns, d) for _, turns, d in batch if d.import_hash not in existing]
    Dialogue.objects.bulk_create([d for _, d in fresh])
    Turn.objects.bulk_create(
        Turn(dialogue=d, position=i, role=t.role, content=t.content)
        for turns, d in fresh
        for i, t in enumerate(turns)
    )
    report.created += len(fresh)
    batch.clear()


__all__ = ["FORMATS", "ImportLineError", "ImportReport", "hh_transcript_to_turns", "project_import"]
