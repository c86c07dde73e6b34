"""Helpers of the reward check tests: ranked tasks at chosen instants, reward models cut at a chosen instant, checks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from ranking.models import Ranking, RankingTask
from ranking.services.tasks import ranking_task_consensus_refresh
from tests.factories import UserFactory
from tests.ranking.factories import RankingTaskFactory, response_ids
from tests.training.factories import trained_model
from training.engine import configs as engine_configs
from training.models import LoopPolicy, ModelKind, RewardCheck, RunKind, SnapshotKind

BEST_FIRST = [[0], [1], [2]]


@dataclass(frozen=True)
class _StandInScoreConfig:
    """The ``score`` command's config as its contract states it (used only until the engine has the command)."""

    model_path: str
    pairs_file: str = "pairs.jsonl"
    max_length: int = 1024
    batch_size: int = 8
    bf16: bool = False


@pytest.fixture
def score_command(monkeypatch):
    """Let the web side's config check know the engine's ``score`` command, as it will once it lands."""
    if "score" not in engine_configs.COMMAND_CONFIGS:
        monkeypatch.setitem(engine_configs.COMMAND_CONFIGS, "score", _StandInScoreConfig)


def ranked_task(project, orders: list[list[list[int]]], *, ranked_at: datetime, completed_at: datetime | None = None,
                answers: int = 3, **fields) -> RankingTask:
    """A task of ``answers`` answers ranked once per order (answers named by position 0..K-1, best first).

    The rankings are made at ``ranked_at`` by distinct labelers; the task completes (consensus) at
    ``completed_at`` (default: ``ranked_at``) when it holds the project's rankings per task.
    """
    task = RankingTaskFactory(project=project, answers=answers, **fields)
    ids = response_ids(task)
    for order in orders:
        Ranking.objects.create(task=task, labeler=UserFactory(), order=[[ids[i] for i in group] for group in order])
    Ranking.objects.filter(task=task).update(created_at=ranked_at)
    with transaction.atomic():  # the service expects the caller's transaction (it locks stats rows)
        ranking_task_consensus_refresh(task=task)
    if task.consensus_at is not None:
        RankingTask.objects.filter(pk=task.pk).update(consensus_at=completed_at or ranked_at)
    task.refresh_from_db()
    return task


def reward_model(project, *, labels_until: datetime, parent=None, name: str | None = None, pairs: str = "labeler"):
    """A reward model trained on a preferences snapshot cut at ``labels_until``."""
    model = trained_model(project, kind=ModelKind.REWARD, run_kind=RunKind.REWARD, parent=parent, name=name,
                          snapshot_kind=SnapshotKind.PREFERENCES)
    model.snapshot.labels_until = labels_until
    model.snapshot.finished_at = labels_until + timedelta(minutes=5)
    model.snapshot.options = {"pairs": pairs, "include_all_bad": True, "task_ids": None}
    model.snapshot.save(update_fields=["labels_until", "finished_at", "options"])
    return model


def make_current(model) -> None:
    LoopPolicy.objects.update_or_create(project=model.project, defaults={"current_reward_model": model})


def check(model, task, *, pairs: int, agreed: int, margin: float | None = 0.5, completed_at: datetime | None = None):
    """A reward check as a score run leaves it."""
    return RewardCheck.objects.create(
        project=model.project, model=model, task=task, pairs=pairs, pairs_agreed=agreed, mean_margin=margin,
        task_completed_at=completed_at or task.consensus_at, checked_at=timezone.now(),
    )
