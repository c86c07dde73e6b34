"""Export accepted demonstrations as SFT data: one ``{"messages": [...]}`` per line (TRL's format)."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from annotation.models import Dialogue, DialogueStatus, Project, Turn

EXPORT_CHUNK_SIZE = 500


@dataclass(frozen=True)
class SftExport:
    """A consistent snapshot: the dialogues accepted up to ``snapshot_at``, and how many there are."""

    project: Project
    snapshot_at: datetime
    row_count: int
    queryset: QuerySet[Dialogue]

    def lines(self) -> Iterator[bytes]:
        """Yield the JSONL rows, reading the database in chunks so memory stays flat."""
        for dialogue in self.queryset.iterator(chunk_size=EXPORT_CHUNK_SIZE):
            messages = [{"role": turn.role, "content": turn.content} for turn in dialogue.turns.all()]
            yield (json.dumps({"messages": messages}, ensure_ascii=False) + "\n").encode()

    @property
    def filename(self) -> str:
        return f"{self.project.slug}-sft-{self.snapshot_at:%Y%m%dT%H%M%SZ}.jsonl"


def sft_export_prepare(*, project: Project, snapshot_at: datetime | None = None) -> SftExport:
    """Freeze what an SFT export contains: dialogues accepted at or before the snapshot time.

    Accepted is final (reviews can't undo it), so the count taken now matches the rows streamed later.
    """
    snapshot_at = snapshot_at or timezone.now()
    queryset = (
        Dialogue.objects.filter(project=project, status=DialogueStatus.ACCEPTED, accepted_at__lte=snapshot_at)
        .only("id")
        .prefetch_related(
            Prefetch("turns", queryset=Turn.objects.only("dialogue_id", "position", "role", "content"))
        )
        .order_by("accepted_at", "id")
    )
    return SftExport(project=project, snapshot_at=snapshot_at, row_count=queryset.count(), queryset=queryset)
