"""Runs that must happen once or fail once: racing triggers, inputs the engine refuses, a snapshot changed
after it was frozen. Real threads on PostgreSQL, a real worker and the real engine."""

import hashlib
import json
import shutil

import pytest
from django.utils import timezone

from config.exceptions import ConflictError
from tests.concurrency import run_at_once
from tests.training.conftest import accepted_demonstrations, run_finished
from tests.training.reliability import (
    Processes,
    broker_flush,
    engine_starts,
    run_folder,
    sft_config,
    tiny_base,
)
from training.models import (
    DatasetSnapshot,
    ModelVersion,
    RunState,
    RunTrigger,
    SnapshotKind,
    SnapshotState,
    TrainingRun,
)
from training.services.reconcile import runs_reconcile
from training.services.runs import run_trigger
from training.services.snapshots import snapshot_build, snapshot_request
from training.services.storage import data_path

pytestmark = [pytest.mark.celery]


@pytest.fixture
def processes(data_root, tmp_path, transactional_db):
    broker_flush()
    tracked = Processes(data_root=data_root, logs=tmp_path)
    try:
        yield tracked
    finally:
        tracked.close()


def _ready_sft_snapshot(project, rows: list[dict]) -> DatasetSnapshot:
    """A frozen SFT snapshot holding exactly these rows (as an export would have written them)."""
    relative = f"snapshots/{project.pk}/by-hand-sft.jsonl"
    path = data_path(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = "".join(json.dumps(row) + "\n" for row in rows).encode()
    path.write_bytes(content)
    return DatasetSnapshot.objects.create(
        project=project, kind=SnapshotKind.SFT, state=SnapshotState.READY, labels_until=timezone.now(),
        file_path=relative, sha256=hashlib.sha256(content).hexdigest(), row_count=len(rows),
        size_bytes=len(content), finished_at=timezone.now(),
    )


def _dialogue(index: int) -> dict:
    return {"messages": [{"role": "user", "content": f"Say something nice number {index}."},
                         {"role": "assistant", "content": f"You are great, friend number {index}!"}]}


@pytest.mark.parametrize("trigger", [RunTrigger.MANUAL, RunTrigger.LOOP])
def test_the_same_trigger_from_several_threads_at_once_makes_one_run(project, processes, trigger):
    base = tiny_base(project)
    accepted_demonstrations(project, 2)
    # a person names the snapshot; the loop lets each trigger freeze a fresh one
    snapshot = _ready_sft_snapshot(project, [_dialogue(0)]) if trigger == RunTrigger.MANUAL else None

    def trigger_once(_):
        try:
            return run_trigger(project=project, kind="sft", input_model=base, snapshot=snapshot,
                               config_overrides={"max_steps": 3}, trigger=trigger)
        except ConflictError as error:
            return error

    results = run_at_once(trigger_once, range(6))

    runs = [result for result in results if isinstance(result, TrainingRun)]
    conflicts = [result for result in results if isinstance(result, ConflictError)]
    assert len(runs) == 1 and len(conflicts) == 5, results
    run = runs[0]
    assert list(TrainingRun.objects.filter(project=project)) == [run]
    for conflict in conflicts:
        assert conflict.extra["run"] == run.pk
        assert f"(run {run.pk}, queued)" in conflict.message
    assert DatasetSnapshot.objects.filter(project=project).count() == 1  # the losers' snapshots rolled back


@pytest.mark.parametrize("refused", ["model folder gone", "dialogue without an answer"])
def test_input_the_engine_refuses_fails_the_run_once_with_the_engines_message(project, processes, refused):
    base = tiny_base(project)
    if refused == "model folder gone":
        accepted_demonstrations(project, 2)
        snapshot = None
        shutil.rmtree(data_path(base.storage_path))  # registered, then moved away: only the engine can tell
        expected = f"model_path '{data_path(base.storage_path)}': no such folder"
    else:
        no_answer = {"messages": [{"role": "user", "content": "Hello?"}]}
        snapshot = _ready_sft_snapshot(project, [_dialogue(0), no_answer])
        expected = "train.jsonl line 2: messages has no assistant turn to learn from"
    processes.worker("gpu")
    run = run_trigger(project=project, kind="sft", input_model=base, snapshot=snapshot, config_overrides=sft_config())
    run = run_finished(run)

    assert run.state == RunState.FAILED
    assert run.error == expected
    assert run.attempt == 1 and run.exit_code == 2
    runs_reconcile()
    run.refresh_from_db()
    assert run.state == RunState.FAILED and run.attempt == 1  # not retried
    assert engine_starts(run_folder(run)) == 1
    assert not ModelVersion.objects.filter(run=run).exists()


def test_a_snapshot_changed_after_it_was_frozen_fails_the_run_without_retry(project, processes):
    base = tiny_base(project)
    accepted_demonstrations(project, 3)
    snapshot = snapshot_build(snapshot=snapshot_request(project=project, kind=SnapshotKind.SFT))
    assert snapshot.state == SnapshotState.READY
    frozen = data_path(snapshot.file_path)
    frozen.write_bytes(frozen.read_bytes() + (json.dumps(_dialogue(99)) + "\n").encode())  # edited by hand

    processes.worker("gpu")
    run = run_finished(
        run_trigger(project=project, kind="sft", input_model=base, snapshot=snapshot, config_overrides=sft_config())
    )

    assert run.state == RunState.FAILED and run.attempt == 1
    assert f"Snapshot {snapshot.pk}'s file changed after it was frozen" in run.error
    assert "refusing to train on it" in run.error
    runs_reconcile()
    run.refresh_from_db()
    assert run.state == RunState.FAILED and run.attempt == 1  # not retried
    assert engine_starts(run_folder(run)) == 0 and run.engine_started_at is None
    assert not (run_folder(run) / "train.jsonl").exists()


def test_a_running_run_that_never_heartbeated_is_requeued_without_stopping_the_reconciler(project, processes):
    # a holder that died right after its claim, its heartbeat cleared by hand (admin): no timestamp to show
    base = tiny_base(project)
    snapshot = _ready_sft_snapshot(project, [_dialogue(0)])
    run = run_trigger(project=project, kind="sft", input_model=base, snapshot=snapshot, config_overrides=sft_config())
    TrainingRun.objects.filter(pk=run.pk).update(state=RunState.RUNNING, attempt=1, worker="gone", heartbeat_at=None)

    assert runs_reconcile()["requeued"] == 1
    run.refresh_from_db()
    assert run.state == RunState.QUEUED and run.dispatch_count == 2
    assert run.error == "Attempt 1 lost its worker gone (no heartbeat since it was claimed)."
