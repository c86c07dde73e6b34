"""A GPU worker dies, is shut down, or its run is cancelled: real workers, beat, engine and databases.

What a user must see: a killed worker's run resumes from its newest checkpoint elsewhere and finishes
once; a run whose holder keeps dying fails with the reason; a deploy (warm shutdown) puts the run back
in the queue; a cancelled run keeps its checkpoint and resumes from it.
"""

import pytest
from django.db import connection

from tests.training.conftest import accepted_demonstrations, run_finished, wait_for
from tests.training.reliability import (
    DatabaseProxy,
    Processes,
    broker_flush,
    complete_checkpoints,
    engine_pids,
    engine_starts,
    kill_engines,
    logged_steps,
    result_json,
    run_folder,
    sft_config,
    tiny_base,
)
from training.models import MetricPoint, ModelKind, ModelVersion, RunState
from training.services.reconcile import runs_reconcile
from training.services.runs import run_cancel, run_resume, run_trigger

pytestmark = [pytest.mark.celery]

STALE_SECONDS = 5  # a holder silent this long is dead (heartbeats come every second)
STALE = {"RLHF_RUN_STALE_AFTER_SECONDS": str(STALE_SECONDS)}
MAX_STEPS = 200
LONG_MAX_STEPS = 1000


@pytest.fixture
def processes(data_root, tmp_path, transactional_db):
    broker_flush()
    tracked = Processes(data_root=data_root, logs=tmp_path)
    try:
        yield tracked
    finally:
        tracked.close()


def _sft_run(project, max_steps: int = MAX_STEPS):
    base = tiny_base(project)
    accepted_demonstrations(project, 6)
    return run_trigger(project=project, kind="sft", input_model=base, config_overrides=sft_config(max_steps=max_steps))


def _assert_finished_once(run, folder, max_steps: int = MAX_STEPS) -> None:
    """Succeeded, one model version, each logged step once in metrics.jsonl and in the database."""
    every_logged_step = list(range(5, max_steps + 1, 5))  # sft_config logs every 5 steps
    assert run.state == RunState.SUCCEEDED, run.error
    assert ModelVersion.objects.filter(project=run.project, kind=ModelKind.SFT).count() == 1
    assert run.output_model.storage_path.endswith("/model")
    assert logged_steps(folder) == every_logged_step
    assert list(MetricPoint.objects.filter(run=run).values_list("step", flat=True)) == every_logged_step
    assert run.step == max_steps


def test_a_run_whose_worker_and_engine_are_killed_resumes_from_its_newest_checkpoint_once(
    project, processes, settings
):
    settings.RLHF_RUN_STALE_AFTER_SECONDS = STALE_SECONDS
    first = processes.worker("first", **STALE)
    run = _sft_run(project)
    folder = run_folder(run)
    wait_for(lambda: complete_checkpoints(folder), what="attempt 1's first complete checkpoint")

    first.kill()
    kill_engines(folder)
    newest = complete_checkpoints(folder)[-1]
    run.refresh_from_db()
    assert run.state == RunState.RUNNING and run.attempt == 1  # as far as anyone knows, its holder lives

    second = processes.worker("second", **STALE)
    processes.beat(RLHF_RECONCILE_SECONDS="2")
    run = run_finished(run)

    _assert_finished_once(run, folder)
    assert run.attempt == 2 and run.worker == second.name
    assert result_json(folder)["resumed_from"] == str(newest)
    assert engine_starts(folder) == 2


def test_an_engine_whose_worker_is_killed_checkpoints_and_stops_instead_of_training_on_alone(
    project, processes, settings
):
    settings.RLHF_RUN_STALE_AFTER_SECONDS = STALE_SECONDS
    first = processes.worker("first", **STALE)
    run = _sft_run(project)
    folder = run_folder(run)
    wait_for(lambda: complete_checkpoints(folder), what="attempt 1's first complete checkpoint")

    first.kill()  # the worker alone: its engine, in a session of its own, is not killed with it
    wait_for(lambda: not engine_pids(folder), timeout=120, what="the orphaned engine to stop")
    stopped = result_json(folder)
    assert stopped["status"] == "stopped" and stopped["step"] < MAX_STEPS  # it got SIGTERM: saved and stopped
    kept = folder / "checkpoints" / f"checkpoint-{stopped['step']}"
    assert complete_checkpoints(folder)[-1] == kept

    second = processes.worker("second", **STALE)
    processes.beat(RLHF_RECONCILE_SECONDS="2")
    run = run_finished(run)
    _assert_finished_once(run, folder)
    assert run.attempt == 2 and run.worker == second.name
    assert result_json(folder)["resumed_from"] == str(kept)


def test_a_run_whose_holder_keeps_dying_fails_after_its_attempts_with_the_reason(project, processes, settings):
    settings.RLHF_RUN_STALE_AFTER_SECONDS = STALE_SECONDS
    settings.RLHF_RUN_MAX_ATTEMPTS = 2
    run = _sft_run(project)
    folder = run_folder(run)

    for attempt in (1, 2):
        worker = processes.worker(f"doomed-{attempt}", **STALE)

        def engine_of_this_attempt(attempt=attempt, worker=worker) -> bool:
            run.refresh_from_db()
            return run.attempt == attempt and run.worker == worker.name and bool(engine_pids(folder))

        wait_for(engine_of_this_attempt, what=f"attempt {attempt}'s engine")
        worker.kill()
        kill_engines(folder)

        def reconciled() -> bool:  # the beat's task, called here: no worker is left alive to run it
            runs_reconcile()
            run.refresh_from_db()
            return run.state != RunState.RUNNING

        wait_for(reconciled, timeout=120, interval=1, what=f"the reconciler to notice attempt {attempt}'s death")
        assert run.state == (RunState.QUEUED if attempt == 1 else RunState.FAILED)

    assert run.attempt == 2
    assert run.error.startswith("Gave up after 2 attempts.")
    assert "Attempt 2 lost its worker doomed-2" in run.error
    assert engine_starts(folder) == 2
    assert not ModelVersion.objects.filter(project=project, kind=ModelKind.SFT).exists()


def test_a_warm_shutdown_puts_the_run_back_in_the_queue_and_another_worker_finishes_it(
    project, processes, settings
):
    # a deploy is not a failed attempt: even a run allowed no retry comes back
    settings.RLHF_RUN_MAX_ATTEMPTS = 1
    first = processes.worker("first")
    run = _sft_run(project)
    folder = run_folder(run)
    wait_for(lambda: complete_checkpoints(folder), what="a complete checkpoint")

    first.process.terminate()  # SIGTERM to the Celery worker: a warm shutdown
    assert first.process.wait(timeout=120) == 0
    assert not engine_pids(folder)
    run.refresh_from_db()
    assert run.state == RunState.QUEUED and run.error == ""
    assert run.result["status"] == "stopped"
    kept = folder / "checkpoints" / f"checkpoint-{run.result['step']}"
    assert (kept / "COMPLETE").is_file() and run.result["step"] < MAX_STEPS

    second = processes.worker("second")
    run = run_finished(run)
    _assert_finished_once(run, folder)
    assert run.worker == second.name
    assert result_json(folder)["resumed_from"] == str(kept)
    assert engine_starts(folder) == 2


def test_a_cancelled_run_checkpoints_and_stops_then_resumes_from_that_checkpoint(project, processes):
    processes.worker("gpu")
    run = _sft_run(project)
    folder = run_folder(run)
    wait_for(lambda: complete_checkpoints(folder), what="a complete checkpoint")

    run_cancel(run=run)
    run = run_finished(run)
    assert run.state == RunState.CANCELLED and run.error == ""
    assert run.result["status"] == "stopped"  # the engine got SIGTERM, saved and stopped
    kept = folder / "checkpoints" / f"checkpoint-{run.result['step']}"
    assert (kept / "COMPLETE").is_file() and run.result["step"] < MAX_STEPS
    assert not ModelVersion.objects.filter(run=run).exists()

    run_resume(run=run)
    run = run_finished(run)
    _assert_finished_once(run, folder)
    assert run.attempt == 2
    assert result_json(folder)["resumed_from"] == str(kept)
    assert engine_starts(folder) == 2


def test_a_database_blip_mid_run_neither_stops_nor_repeats_the_run(project, processes):
    worker = processes.worker("gpu")
    run = _sft_run(project)
    folder = run_folder(run)
    wait_for(lambda: complete_checkpoints(folder), what="a complete checkpoint")

    with connection.cursor() as cursor:  # every other session on the test database: the worker's
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        assert cursor.fetchall()
    run = run_finished(run, timeout=180)

    _assert_finished_once(run, folder)
    assert run.attempt == 1 and engine_starts(folder) == 1
    assert "database error while supervising" in worker.log_text()  # the blip did reach the worker


def test_a_worker_cut_off_from_the_database_stops_its_engine_before_the_run_can_be_given_away(
    project, processes, settings
):
    settings.RLHF_RUN_STALE_AFTER_SECONDS = STALE_SECONDS
    proxy = DatabaseProxy()
    try:
        processes.worker("cut-off", DATABASE_URL=proxy.database_url(), **STALE)
        processes.beat(RLHF_RECONCILE_SECONDS="2")  # the reconciler runs on that worker: cut off too
        # long enough to outlast the worker's noticing (STALE_SECONDS of silence, then SIGTERM): 200 steps
        # of the tiny model can end in ~6 s on a fast machine, before the stop arrives
        run = _sft_run(project, max_steps=LONG_MAX_STEPS)
        folder = run_folder(run)
        wait_for(lambda: complete_checkpoints(folder), what="a complete checkpoint")

        proxy.cut()
        wait_for(lambda: not engine_pids(folder), timeout=120, what="the engine to stop")
        stopped = result_json(folder)
        assert stopped["status"] == "stopped" and stopped["step"] < LONG_MAX_STEPS
        kept = folder / "checkpoints" / f"checkpoint-{stopped['step']}"
        proxy.restore()
        run = run_finished(run)
    finally:
        proxy.close()

    _assert_finished_once(run, folder, max_steps=LONG_MAX_STEPS)
    assert run.attempt == 2 and result_json(folder)["resumed_from"] == str(kept)
    log = (folder / "engine.log").read_text()
    assert log.index("sft: stopped") < log.index("==== attempt 2 ")  # never two engines at once
