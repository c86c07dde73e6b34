"""Export accepted demonstrations as SFT data: one ``{"messages": [...]}`` per line (TRL's format).

Also the guard every streamed JSONL download goes through (``jsonl_stream``): a body that fails
half-way ends with an error line instead of passing for a complete file.
"""

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from annotation.models import Dialogue, DialogueStatus, Project, Turn
from audit.models import AuditAction
from audit.services import audit_record

logger = logging.getLogger(__name__)

EXPORT_CHUNK_SIZE = 2000  # dialogues per server-side cursor fetch, and per query for their turns
STREAM_BLOCK_BYTES = 64 * 1024  # a streamed body is written in blocks of about this size, not a line at a time
EXPORT_ERROR_KEY = "export_error"


def jsonl_stream(lines: Iterable[str | bytes], *, block_bytes: int = STREAM_BLOCK_BYTES) -> Iterator[bytes]:
    """Join encoded JSON lines into blocks for a streamed download; end with an error line if producing them fails.

    A response's status and headers are gone by the time a line fails, so an error can't become a
    500: the body then ends with one last line ``{"export_error": "…"}`` saying how far it got,
    which no reader of the data accepts as a row (the training engine refuses the file), and the
    server logs the traceback. Clients check the last line (or that no line has ``export_error``).
    """
    block: list[bytes] = []
    size = written = 0
    try:
        for line in lines:
            encoded = line.encode() if isinstance(line, str) else line
            block.append(encoded)
            size += len(encoded)
            written += 1
            if size >= block_bytes:
                yield b"".join(block)
                block, size = [], 0
    except Exception as error:
        logger.exception("a JSONL export stopped after %s lines", written)
        message = (
            f"The export stopped after {written} line(s) ({type(error).__name__}); this file is incomplete. "
            "Export again; the server log has the details."
        )
        block.append((json.dumps({EXPORT_ERROR_KEY: message}) + "\n").encode())
    if block:
        yield b"".join(block)


@dataclass(frozen=True)
class SftExport:
    """A consistent snapshot: the dialogues accepted up to ``snapshot_at``, and how many there are."""

    project: Project
    snapshot_at: datetime
    row_count: int
    queryset: QuerySet[Dialogue]

    def lines(self) -> Iterator[bytes]:
        """Yield the JSONL rows: dialogue ids through one server-side cursor, their turns one query per chunk."""
        ids = self.queryset.values_list("pk", flat=True).iterator(chunk_size=EXPORT_CHUNK_SIZE)
        for chunk in _chunks(ids, EXPORT_CHUNK_SIZE):
            messages: dict[int, list[dict]] = {pk: [] for pk in chunk}
            turns = Turn.objects.filter(dialogue_id__in=chunk).order_by("dialogue_id", "position")
            for dialogue_id, role, content in turns.values_list("dialogue_id", "role", "content"):
                messages[dialogue_id].append({"role": role, "content": content})
            for pk in chunk:
                yield (json.dumps({"messages": messages[pk]}, ensure_ascii=False) + "\n").encode()

    @property
    def filename(self) -> str:
        return f"{self.project.slug}-sft-{self.snapshot_at:%Y%m%dT%H%M%SZ}.jsonl"


def sft_export_prepare(
    *, project: Project, snapshot_at: datetime | None = None, exported_by: AbstractBaseUser | None = None
) -> SftExport:
    """Freeze what an SFT export contains: dialogues accepted at or before the snapshot time.

    Accepted is final (reviews can't undo it), so the count taken now matches the rows streamed later.
    A person's download names ``exported_by`` and goes into the audit trail (a snapshot's build doesn't).
    """
    snapshot_at = snapshot_at or timezone.now()
    queryset = Dialogue.objects.filter(
        project=project, status=DialogueStatus.ACCEPTED, accepted_at__lte=snapshot_at
    ).order_by("accepted_at", "id")
    export = SftExport(project=project, snapshot_at=snapshot_at, row_count=queryset.count(), queryset=queryset)
    if exported_by is not None:
        audit_record(actor=exported_by, action=AuditAction.EXPORT, project=project, obj=project,
                     details={"format": "sft.jsonl", "rows": export.row_count, "snapshot_at": snapshot_at})
    return export


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
