"""The broker is a doorbell, the database the truth: Redis redelivers or loses messages, runs still run once.

celery/celery#5935: with acks_late, Redis hands an unacknowledged message to another worker once its
visibility timeout passes, however long the task legitimately runs; and a flushed (or restarted
without persistence) Redis forgets every queued message.
"""

import time

import pytest

from tests.training.conftest import accepted_demonstrations, run_finished, wait_for
from tests.training.reliability import (
    Processes,
    broker_flush,
    engine_starts,
    run_folder,
    sft_config,
    tiny_base,
)
from training.models import ModelKind, ModelVersion, RunState, SnapshotState, TrainingRun
from training.services.runs import run_trigger
from training.services.snapshots import snapshot_build

pytestmark = [pytest.mark.celery]


@pytest.fixture
def processes(data_root, tmp_path, transactional_db):
    broker_flush()
    tracked = Processes(data_root=data_root, logs=tmp_path)
    try:
        yield tracked
    finally:
        tracked.close()


def test_a_run_that_outlasts_the_brokers_visibility_timeout_runs_exactly_once(project, processes):
    short = {"RLHF_BROKER_VISIBILITY_TIMEOUT": "2"}
    workers = [processes.worker("one", **short), processes.worker("two", **short)]
    base = tiny_base(project)
    accepted_demonstrations(project, 6)
    run = run_trigger(project=project, kind="sft", input_model=base, config_overrides=sft_config(max_steps=200))
    folder = run_folder(run)

    def redelivered_while_running() -> bool:
        run.refresh_from_db()
        if run.attempt > 1:
            raise AssertionError(f"run {run.pk} was started again: attempt {run.attempt} on {run.worker}")
        if run.state not in RunState.active():
            raise AssertionError(f"run {run.pk} finished before Redis redelivered its message: make it longer")
        return any(f"run {run.pk} not claimed: it is running" in worker.log_text() for worker in workers)

    wait_for(redelivered_while_running, what="Redis to redeliver the running task's message to the idle worker")
    run = run_finished(run)

    assert run.state == RunState.SUCCEEDED, run.error
    assert run.attempt == 1 and run.dispatch_count == 1
    assert engine_starts(folder) == 1
    assert ModelVersion.objects.filter(project=project, kind=ModelKind.SFT).count() == 1


def test_runs_whose_messages_were_flushed_from_redis_are_sent_again_and_finish_within_two_minutes(
    project, processes
):
    base = tiny_base(project)
    accepted_demonstrations(project, 6)
    # No worker runs. One run waits in the queue on a ready snapshot; another waits for its snapshot's build.
    queued = run_trigger(project=project, kind="sft", input_model=base, config_overrides=sft_config(max_steps=10))
    snapshot_build(snapshot=queued.snapshot)
    queued.refresh_from_db()
    assert queued.state == RunState.QUEUED and queued.dispatch_count == 1
    waiting = run_trigger(project=project, kind="sft", input_model=base, config_overrides=sft_config(max_steps=12))
    assert waiting.snapshot.state == SnapshotState.BUILDING and waiting.dispatch_count == 0
    # and one whose snapshot's builder died after marking the snapshot ready, before sending the run
    undispatched = run_trigger(project=project, kind="sft", input_model=base, snapshot=queued.snapshot,
                               config_overrides=sft_config(max_steps=14))
    TrainingRun.objects.filter(pk=undispatched.pk).update(dispatched_at=None, dispatch_count=0)

    broker_flush()  # every message is gone: the runs', the snapshot build's
    flushed = time.monotonic()
    processes.worker("gpu", RLHF_RUN_REDISPATCH_SECONDS="3", RLHF_SNAPSHOT_REBUILD_SECONDS="3")
    processes.beat(RLHF_RECONCILE_SECONDS="2")
    runs = [run_finished(run, timeout=300) for run in (queued, waiting, undispatched)]
    took = time.monotonic() - flushed

    for run in runs:
        assert run.state == RunState.SUCCEEDED, run.error
        assert run.attempt == 1 and engine_starts(run_folder(run)) == 1
        assert ModelVersion.objects.filter(run=run).count() == 1
    assert runs[0].dispatch_count >= 2  # sent again by the reconciler
    assert took < 120, f"the flushed runs took {took:.0f} s to finish"
