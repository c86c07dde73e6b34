"""Export rankings as preference pairs: TRL's conversational format (+ margin, group) and HH-RLHF.

One line per ordered pair: a ranking of K answers gives C(K, 2) pairs minus its tied pairs.
``margin`` is the distance between the two answers' rank groups (1 for neighbours, up to K - 1),
so a pair the labeler separated more widely asks the reward model for a wider gap. ``group``
names the ranking the pair came from (``ranking-<id>``, or ``task-<id>`` for consensus pairs), so
the engine weighs each ranking once and keeps a ranking's pairs on one side of a train/eval split.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from datetime import datetime

from django.db.models import Prefetch

from annotation.models import Project
from ranking.models import Ranking, RankingTask, TaskPurpose, TaskStatus
from ranking.services.imports import hh_transcript_render
from ranking.services.orderings import ordering_pairs

PAIRS_LABELER = "labeler"
PAIRS_CONSENSUS = "consensus"
PAIR_MODES = (PAIRS_LABELER, PAIRS_CONSENSUS)


def _tasks(
    *, project: Project, consensus_only: bool, rankings_until: datetime | None = None,
    task_ids: Collection[int] | None = None,
):
    # evaluation tasks judge model versions: they never train one
    tasks = (
        RankingTask.objects.filter(project=project, purpose=TaskPurpose.RANKING)
        .exclude(status=TaskStatus.DISABLED).order_by("pk")
    )
    if task_ids is not None:
        tasks = tasks.filter(pk__in=list(task_ids))
    if consensus_only:
        tasks = tasks.filter(consensus_order__isnull=False) | tasks.filter(is_gold=True)
    rankings = Ranking.objects.order_by("pk")
    if rankings_until is not None:
        rankings = rankings.filter(created_at__lte=rankings_until)
    return tasks.prefetch_related("responses", Prefetch("rankings", queryset=rankings)).iterator(chunk_size=500)


def preference_pairs(
    *, project: Project, pairs: str = PAIRS_LABELER, include_all_bad: bool = True,
    rankings_until: datetime | None = None, task_ids: Collection[int] | None = None, with_task: bool = False,
) -> Iterator[dict]:
    """Yield {prompt, chosen, rejected, margin, group} for every preference of the project's rankings.

    ``pairs="labeler"``: every ranking's own pairs (imported preferences included).
    ``pairs="consensus"``: one ordering per task: the gold ranking for gold tasks, else the consensus.
    ``include_all_bad=False`` leaves out rankings whose labeler marked every answer bad (labeler pairs).
    ``rankings_until`` leaves out rankings made after that instant (labeler pairs; a dataset snapshot's cut).
    ``task_ids`` keeps only those tasks; ``with_task`` adds each pair's task id as ``task``.
    """
    if pairs not in PAIR_MODES:
        raise ValueError(f"pairs must be one of {', '.join(PAIR_MODES)}")
    tasks = _tasks(project=project, consensus_only=pairs == PAIRS_CONSENSUS, rankings_until=rankings_until,
                   task_ids=task_ids)
    for task in tasks:
        content = {response.pk: response.content for response in task.responses.all()}
        if pairs == PAIRS_CONSENSUS:
            order = task.gold_order if task.is_gold else task.consensus_order
            orderings = [(f"task-{task.pk}", order)] if order else []
        else:
            orderings = [
                (f"ranking-{ranking.pk}", ranking.order)
                for ranking in task.rankings.all()
                if include_all_bad or not ranking.all_bad
            ]
        for group, order in orderings:
            for better, worse, distance in ordering_pairs(order):
                row = {
                    "prompt": task.context,
                    "chosen": [{"role": "assistant", "content": content[better]}],
                    "rejected": [{"role": "assistant", "content": content[worse]}],
                    "margin": float(distance),
                    "group": group,
                }
                if with_task:
                    row["task"] = task.pk
                yield row


def hh_rlhf_pairs(*, project: Project, pairs: str = PAIRS_LABELER, include_all_bad: bool = True) -> Iterator[dict]:
    """Yield {chosen, rejected} HH-RLHF transcripts for the same pairs as ``preference_pairs``."""
    for row in preference_pairs(project=project, pairs=pairs, include_all_bad=include_all_bad):
        yield {
            "chosen": hh_transcript_render([*row["prompt"], *row["chosen"]]),
            "rejected": hh_transcript_render([*row["prompt"], *row["rejected"]]),
        }


def jsonl_lines(rows: Iterator[dict]) -> Iterator[str]:
    """Encode rows as JSON lines (UTF-8 kept readable)."""
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"
