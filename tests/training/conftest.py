"""Fixtures for the training app: a data root per test, a real GPU-queue worker, waiting on runs."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from annotation.models import DialogueStatus
from tests.annotation.factories import DialogueFactory
from tests.conftest import celery_worker_env, celery_worker_start, celery_worker_stop
from tests.factories import UserFactory

# Fast clocks for tests: heartbeats every second, metrics every half second.
FAST_WORKER_ENV = {
    "RLHF_RUN_HEARTBEAT_SECONDS": "1",
    "RLHF_METRICS_SYNC_SECONDS": "0.5",
    "RLHF_RUN_POLL_SECONDS": "0.2",
    "OMP_NUM_THREADS": "1",  # two threads on two shared cores made tiny steps 10–15× slower
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


@pytest.fixture
def data_root(settings, tmp_path):
    """RLHF_DATA_ROOT in a fresh folder (the web side here and the worker processes share it)."""
    root = tmp_path / "data"
    root.mkdir()
    settings.DATA_ROOT = root
    settings.RLHF_MODEL_IMPORT_ROOTS = [str(root)]
    return root


@pytest.fixture
def gpu_worker(data_root, transactional_db):
    """A real Celery worker serving the default and gpu queues with fast heartbeats; yields its Popen."""
    worker = celery_worker_start(name="training", env=celery_worker_env(**FAST_WORKER_ENV))
    try:
        yield worker
    finally:
        celery_worker_stop(worker)


def wait_for(predicate, *, timeout: float = 180, interval: float = 0.3, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; return that, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_finished(run, *, timeout: float = 240):
    """Wait until the run leaves queued/running; return it fresh from the database."""
    def finished():
        run.refresh_from_db()
        return run.state in ("succeeded", "failed", "cancelled")

    wait_for(finished, timeout=timeout, what=f"run {run.pk} ({run.kind}) to finish")
    return run


def accepted_demonstrations(project, count: int, *, author=None):
    """Make ``count`` accepted demonstrations in the project (distinct short exchanges)."""
    from annotation.services.dialogues import TurnData

    author = author or UserFactory()
    return [
        DialogueFactory(
            project=project, author=author, status=DialogueStatus.ACCEPTED, accepted_at=timezone.now(),
            turns=[TurnData(role="user", content=f"Say something nice number {index}."),
                   TurnData(role="assistant", content=f"You are great, friend number {index}!")],
        )
        for index in range(count)
    ]
