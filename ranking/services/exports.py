"""Export rankings as preference pairs: TRL's conversational format (+ margin, group) and HH-RLHF.

One line per ordered pair: a ranking of K answers gives C(K, 2) pairs minus its tied pairs.
``margin`` is the distance between the two answers' rank groups (1 for neighbours, up to K - 1),
so a pair the labeler separated more widely asks the reward model for a wider gap. ``group``
names the ranking the pair came from (``ranking-<id>``, or ``task-<id>`` for consensus pairs), so
the engine weighs each ranking once and keeps a ranking's pairs on one side of a train/eval split.

Cost follows what is exported, not what the project holds: the orderings are read with one
server-side cursor (rankings joined to their task in SQL, only the columns a pair needs), and the
answers' texts once per chunk of orderings, so memory stays flat and a project with a million
unranked tasks exports its thousand rankings in a second. An ordering that doesn't fit its task's
answers (data written before the model refused it) is skipped and counted in ``ExportReport``,
never a crash half-way; an unexpected error while streaming ends the body with an error line
(``jsonl_lines``), so a broken download can't pass for a complete one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q

from annotation.models import Project
from annotation.services.exports import jsonl_stream
from audit.models import AuditAction
from audit.services import audit_record
from ranking.models import Ranking, RankingTask, Response, TaskPurpose, TaskStatus
from ranking.services.imports import hh_transcript_render
from ranking.services.orderings import ordering_pairs

logger = logging.getLogger(__name__)

PAIRS_LABELER = "labeler"
PAIRS_CONSENSUS = "consensus"
PAIR_MODES = (PAIRS_LABELER, PAIRS_CONSENSUS)
EXPORT_CHUNK_SIZE = 2000  # orderings per server-side cursor fetch (and per query for their answers' texts)
REPORTED_IDS_MAX = 100


@dataclass
class ExportReport:
    """What an export wrote and what it had to leave out (filled in while the rows are consumed)."""

    pairs: int = 0
    orderings: int = 0
    skipped_count: int = 0  # orderings that don't fit their task's answers
    skipped: list[str] = field(default_factory=list)  # their groups ("ranking-12"), the first REPORTED_IDS_MAX


@dataclass(frozen=True)
class _Ordering:
    group: str
    task_id: int
    context: list
    order: object


def _labeler_orderings(
    *, project: Project, include_all_bad: bool, rankings_until: datetime | None, task_ids: Collection[int] | None,
) -> Iterator[_Ordering]:
    # evaluation tasks judge model versions: they never train one
    rankings = Ranking.objects.filter(task__project=project, task__purpose=TaskPurpose.RANKING).exclude(
        task__status=TaskStatus.DISABLED
    )
    if task_ids is not None:
        rankings = rankings.filter(task_id__in=list(task_ids))
    if rankings_until is not None:
        rankings = rankings.filter(created_at__lte=rankings_until)
    if not include_all_bad:
        rankings = rankings.filter(all_bad=False)
    rows = rankings.order_by("task_id", "pk").values_list("pk", "task_id", "task__context", "order")
    for pk, task_id, context, order in rows.iterator(chunk_size=EXPORT_CHUNK_SIZE):
        yield _Ordering(f"ranking-{pk}", task_id, context, order)


def _consensus_orderings(*, project: Project, task_ids: Collection[int] | None) -> Iterator[_Ordering]:
    tasks = RankingTask.objects.filter(project=project, purpose=TaskPurpose.RANKING).exclude(
        status=TaskStatus.DISABLED
    ).filter(Q(consensus_order__isnull=False) | Q(is_gold=True))
    if task_ids is not None:
        tasks = tasks.filter(pk__in=list(task_ids))
    rows = tasks.order_by("pk").values_list("pk", "context", "is_gold", "gold_order", "consensus_order")
    for pk, context, is_gold, gold_order, consensus_order in rows.iterator(chunk_size=EXPORT_CHUNK_SIZE):
        order = gold_order if is_gold else consensus_order
        if order:
            yield _Ordering(f"task-{pk}", pk, context, order)


def _chunks(items: Iterator[_Ordering], size: int) -> Iterator[list[_Ordering]]:
    chunk: list[_Ordering] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _answers(task_ids: Iterable[int]) -> dict[int, tuple[int, list[dict]]]:
    """{response id: (task id, [{"role": "assistant", "content": …}])} for these tasks' answers, one query."""
    # order_by(): Response's default ordering ("task", "position") would join every task of the project
    rows = Response.objects.filter(task_id__in=sorted(set(task_ids))).order_by().values_list("pk", "task_id", "content")
    return {pk: (task_id, [{"role": "assistant", "content": content}]) for pk, task_id, content in rows}


def _fits(order: object, *, task_id: int, answers: dict) -> bool:
    """True when ``order`` is groups of ids of this task's answers (what ``ordering_pairs`` needs)."""
    if not isinstance(order, list):
        return False
    for group in order:
        if not isinstance(group, list):
            return False
        for item in group:
            answer = answers.get(item) if isinstance(item, int) and not isinstance(item, bool) else None
            if answer is None or answer[0] != task_id:
                return False
    return True


def _fitting_orderings(
    *, project: Project, pairs: str, include_all_bad: bool, rankings_until: datetime | None,
    task_ids: Collection[int] | None, report: ExportReport,
) -> Iterator[tuple[list[_Ordering], dict[int, tuple[int, list[dict]]]]]:
    """Yield (chunk of orderings that fit their task's answers, the answers of the chunk's tasks); count the others."""
    if pairs not in PAIR_MODES:
        raise ValueError(f"pairs must be one of {', '.join(PAIR_MODES)}")
    if pairs == PAIRS_CONSENSUS:
        orderings = _consensus_orderings(project=project, task_ids=task_ids)
    else:
        orderings = _labeler_orderings(
            project=project, include_all_bad=include_all_bad, rankings_until=rankings_until, task_ids=task_ids
        )
    for chunk in _chunks(orderings, EXPORT_CHUNK_SIZE):
        answers = _answers(item.task_id for item in chunk)
        fitting = []
        for item in chunk:
            if _fits(item.order, task_id=item.task_id, answers=answers):
                fitting.append(item)
                continue
            report.skipped_count += 1
            if len(report.skipped) < REPORTED_IDS_MAX:
                report.skipped.append(item.group)
            logger.warning("export of project %s skips %s: its order doesn't fit task %s's answers",
                           project.pk, item.group, item.task_id)
        report.orderings += len(fitting)
        yield fitting, answers


def preference_pairs(
    *, project: Project, pairs: str = PAIRS_LABELER, include_all_bad: bool = True,
    rankings_until: datetime | None = None, task_ids: Collection[int] | None = None, with_task: bool = False,
    report: ExportReport | None = None,
) -> Iterator[dict]:
    """Yield {prompt, chosen, rejected, margin, group} for every preference of the project's rankings.

    ``pairs="labeler"``: every ranking's own pairs (imported preferences included), by task then ranking.
    ``pairs="consensus"``: one ordering per task: the gold ranking for gold tasks, else the consensus.
    ``include_all_bad=False`` leaves out rankings whose labeler marked every answer bad (labeler pairs).
    ``rankings_until`` leaves out rankings made after that instant (labeler pairs; a dataset snapshot's cut).
    ``task_ids`` keeps only those tasks; ``with_task`` adds each pair's task id as ``task``.
    ``report`` (optional) counts the pairs and the orderings skipped because they don't fit their task.
    Rows share their message lists: copy before changing one. ``preference_lines`` gives the same as JSONL, faster.
    """
    report = report if report is not None else ExportReport()
    for chunk, answers in _fitting_orderings(project=project, pairs=pairs, include_all_bad=include_all_bad,
                                             rankings_until=rankings_until, task_ids=task_ids, report=report):
        for item in chunk:
            for better, worse, distance in ordering_pairs(item.order):
                row = {
                    "prompt": item.context,
                    "chosen": answers[better][1],
                    "rejected": answers[worse][1],
                    "margin": float(distance),
                    "group": item.group,
                }
                if with_task:
                    row["task"] = item.task_id
                report.pairs += 1
                yield row


def preference_lines(
    *, project: Project, pairs: str = PAIRS_LABELER, include_all_bad: bool = True,
    rankings_until: datetime | None = None, task_ids: Collection[int] | None = None, with_task: bool = False,
    report: ExportReport | None = None,
) -> Iterator[str]:
    """The JSONL lines of ``preference_pairs``, byte for byte (``json.dumps`` of each row, UTF-8 kept readable),
    with each conversation and each answer encoded once rather than once per pair (a K=4 ranking has six)."""
    report = report if report is not None else ExportReport()
    for chunk, answers in _fitting_orderings(project=project, pairs=pairs, include_all_bad=include_all_bad,
                                             rankings_until=rankings_until, task_ids=task_ids, report=report):
        encoded = {pk: json.dumps(messages, ensure_ascii=False) for pk, (_, messages) in answers.items()}
        for item in chunk:
            head = '{"prompt": ' + json.dumps(item.context, ensure_ascii=False) + ', "chosen": '
            tail = ', "group": ' + json.dumps(item.group) + (f', "task": {item.task_id}' if with_task else "") + "}\n"
            for better, worse, distance in ordering_pairs(item.order):
                report.pairs += 1
                yield f'{head}{encoded[better]}, "rejected": {encoded[worse]}, "margin": {float(distance)!r}{tail}'


def hh_rlhf_pairs(
    *, project: Project, pairs: str = PAIRS_LABELER, include_all_bad: bool = True, report: ExportReport | None = None,
) -> Iterator[dict]:
    """Yield {chosen, rejected} HH-RLHF transcripts for the same pairs as ``preference_pairs``."""
    for row in preference_pairs(project=project, pairs=pairs, include_all_bad=include_all_bad, report=report):
        yield {
            "chosen": hh_transcript_render([*row["prompt"], *row["chosen"]]),
            "rejected": hh_transcript_render([*row["prompt"], *row["rejected"]]),
        }


def preference_export_prepare(
    *, project: Project, format: str, pairs: str, include_all_bad: bool, exported_by: AbstractBaseUser
) -> Iterator[str]:
    """Record a person's export in the audit trail and return its JSONL lines (``format``: preferences or hh-rlhf)."""
    audit_record(actor=exported_by, action=AuditAction.EXPORT, project=project, obj=project,
                 details={"format": f"{format}.jsonl", "pairs": pairs, "include_all_bad": include_all_bad})
    if format == "hh-rlhf":
        rows = hh_rlhf_pairs(project=project, pairs=pairs, include_all_bad=include_all_bad)
        return (json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return preference_lines(project=project, pairs=pairs, include_all_bad=include_all_bad)


def jsonl_lines(rows: Iterator[dict]) -> Iterator[bytes]:
    """Encode rows as JSON lines (UTF-8 kept readable) in blocks; a failure half-way ends with an error line."""
    return jsonl_stream(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
