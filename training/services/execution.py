"""A run on a GPU worker: claim it in the database, prepare its folder, launch the engine as a
subprocess, supervise it (heartbeat, metrics, cancel) and settle it from the engine's result.json.

Exactly-once comes from the claim, not from the broker: a message may arrive twice (Redis redelivers
an unacknowledged message after its visibility timeout, the reconciler resends lost ones), but only a
conditional update that moves the run from queued (or from running with a dead holder) to running,
one attempt higher, lets a worker start the engine. Every later write is conditional on still
holding that attempt, so a worker that lost its claim can change nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.utils import timezone

from training.models import (
    GpuWorker,
    MetricPoint,
    ModelVersion,
    RunKind,
    RunState,
    SnapshotState,
    TrainingRun,
)
from training.services.runs import RUN_SPECS, run_dispatch
from training.services.storage import data_path, data_relative, file_sha256

logger = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2  # the engine's exit code for bad config or data: retrying can't help
ENGINE_STOP_GRACE_SECONDS = 120  # an engine asked to stop has this long to save its checkpoint
ENGINE_LOG = "engine.log"
SINGLE_PROCESS_KINDS = {RunKind.SAMPLE, RunKind.IMPORT_GGUF, RunKind.MAKE_TINY, RunKind.SCORE}


class WorkerShutdown:
    """Set by the Celery worker's shutdown signal: the engine is asked to checkpoint and the run goes back to the queue."""

    requested = False


@dataclass(frozen=True)
class Claim:
    run_id: int
    attempt: int
    worker: str

    def holding(self):
        """A queryset of the run that matches only while this claim still holds it."""
        return TrainingRun.objects.filter(
            pk=self.run_id, attempt=self.attempt, worker=self.worker, state=RunState.RUNNING
        )


# ---- who runs ----------------------------------------------------------------------------------------


def worker_name() -> str:
    return os.environ.get("RLHF_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


def gpus_visible() -> list[str]:
    """Return the names of the GPUs this worker may use (nvidia-smi; torch is never imported here)."""
    forced = os.environ.get("RLHF_GPUS")
    if forced is not None:
        return [f"gpu{index}" for index in range(int(forced))]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        output = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    names = [line.strip() for line in output.splitlines() if line.strip()]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        indexes = [int(part) for part in visible.split(",") if part.strip().isdigit()]
        names = [names[index] for index in indexes if index < len(names)]
    return names


def worker_heartbeat(*, name: str, gpu_names: list[str], current_run_id: int | None) -> None:
    """Record that this GPU worker is alive (and what it holds)."""
    now = timezone.now()
    updated = GpuWorker.objects.filter(hostname=name).update(
        last_heartbeat=now, current_run_id=current_run_id, gpu_count=len(gpu_names), gpu_names=gpu_names
    )
    if not updated:
        GpuWorker.objects.update_or_create(
            hostname=name,
            defaults={"gpu_count": len(gpu_names), "gpu_names": gpu_names, "pid": os.getpid(),
                      "current_run_id": current_run_id, "started_at": now, "last_heartbeat": now},
        )


def worker_alive(*, name: str, gpu_names: list[str]) -> None:
    """Refresh this worker's heartbeat; register it again (idle) if its row was deleted meanwhile."""
    if not GpuWorker.objects.filter(hostname=name).update(last_heartbeat=timezone.now()):
        worker_heartbeat(name=name, gpu_names=gpu_names, current_run_id=None)


# ---- claim -------------------------------------------------------------------------------------------


def run_claim(*, run_id: int, worker: str) -> Claim | None:
    """Take the run for one attempt if it is queued, or running with a holder that stopped heartbeating.

    Return None when someone else holds it, it finished, or it waits for its snapshot. A run out of
    attempts fails here with the reason.
    """
    run = TrainingRun.objects.filter(pk=run_id).select_related("snapshot").first()
    if run is None:
        return None
    stale_before = timezone.now() - timedelta(seconds=settings.RLHF_RUN_STALE_AFTER_SECONDS)
    abandoned = run.state == RunState.RUNNING and (run.heartbeat_at is None or run.heartbeat_at < stale_before)
    if run.state != RunState.QUEUED and not abandoned:
        # a duplicate message (Redis redelivery, a resend): the run is held or finished
        logger.info("run %s not claimed: it is %s (attempt %s, %s)", run.pk, run.state, run.attempt, run.worker or "-")
        return None
    if run.snapshot_id and run.snapshot.state != SnapshotState.READY:
        logger.info("run %s not claimed: its snapshot %s is %s", run.pk, run.snapshot_id, run.snapshot.state)
        return None
    seen = TrainingRun.objects.filter(pk=run.pk, state=run.state, attempt=run.attempt, heartbeat_at=run.heartbeat_at)
    if run.cancel_requested:
        seen.update(state=RunState.CANCELLED, finished_at=timezone.now())
        return None
    if run.attempt >= run.max_attempts:
        reason = f"Gave up after {run.attempt} attempts. Last error: {run.error or 'the worker stopped heartbeating'}"
        if seen.update(state=RunState.FAILED, error=reason, finished_at=timezone.now()):
            _after_settle(run_id=run.pk)
        return None
    now = timezone.now()
    claimed = seen.update(
        state=RunState.RUNNING, attempt=run.attempt + 1, worker=worker, heartbeat_at=now,
        started_at=run.started_at or now, engine_started_at=None,
    )
    if not claimed:
        return None  # another worker won the race
    logger.info("run %s claimed by %s (attempt %s)", run.pk, worker, run.attempt + 1)
    return Claim(run_id=run.pk, attempt=run.attempt + 1, worker=worker)


# ---- the run folder ----------------------------------------------------------------------------------


class RunFolderError(Exception):
    """The run's inputs are not what was recorded (a changed snapshot): fail, don't retry."""


def run_folder_prepare(*, run: TrainingRun) -> Path:
    """Write config.json and put the snapshot in the run folder, after checking its sha256; return the folder."""
    folder = data_path(run.run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    spec = RUN_SPECS[run.kind]
    if run.snapshot_id:
        source = data_path(run.snapshot.file_path)
        if not source.is_file():
            raise RunFolderError(f"Snapshot {run.snapshot_id}'s file {source} is missing.")
        actual = file_sha256(source)
        if actual != run.snapshot.sha256:
            raise RunFolderError(
                f"Snapshot {run.snapshot_id}'s file changed after it was frozen (sha256 {actual[:12]}… "
                f"instead of {run.snapshot.sha256[:12]}…); refusing to train on it."
            )
        target = folder / spec.input_file
        if not target.exists():
            temp = folder / f".{spec.input_file}.tmp"
            shutil.copyfile(source, temp)
            os.replace(temp, target)
    config_temp = folder / ".config.json.tmp"
    config_temp.write_text(json.dumps(run.config, indent=2) + "\n")
    os.replace(config_temp, folder / "config.json")
    # a result.json of an earlier attempt must not be read as this attempt's
    (folder / "result.json").unlink(missing_ok=True)
    return folder


def engine_command(*, kind: str, folder: Path, gpu_count: int) -> list[str]:
    """The engine's command line: torchrun with one process per GPU when the node has several."""
    if gpu_count > 1 and kind not in SINGLE_PROCESS_KINDS:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpu_count}",
                "-m", "training.engine", kind, "--run-dir", str(folder)]
    return [sys.executable, "-m", "training.engine", kind, "--run-dir", str(folder)]


# ---- supervise ---------------------------------------------------------------------------------------


def run_execute(*, run_id: int, worker: str | None = None, gpu_names: list[str] | None = None) -> str:
    """Claim the run, run the engine to its end and settle the run; return what happened in a word."""
    worker = worker or worker_name()
    gpu_names = gpus_visible() if gpu_names is None else gpu_names
    claim = run_claim(run_id=run_id, worker=worker)
    if claim is None:
        return "not-claimed"
    run = TrainingRun.objects.select_related("snapshot", "input_model", "project").get(pk=run_id)
    try:
        folder = run_folder_prepare(run=run)
    except (RunFolderError, OSError) as error:
        run_settle(claim=claim, exit_code=None, result=None, folder=None, error=str(error), retry=False)
        return "failed"
    # Copying a large snapshot takes a while without heartbeats: the run may have been given to
    # someone else meanwhile, or cancelled. Check before an engine touches the folder.
    if not claim.holding().update(heartbeat_at=timezone.now()):
        logger.warning("run %s: claim of attempt %s lost while preparing; not starting the engine", run_id, claim.attempt)
        return "lost-claim"
    if TrainingRun.objects.filter(pk=run_id, cancel_requested=True).exists():
        return run_settle(claim=claim, exit_code=None, result=None, folder=folder, stop_asked=True)
    worker_heartbeat(name=worker, gpu_names=gpu_names, current_run_id=run_id)
    try:
        ended = _engine_supervise(claim=claim, run=run, folder=folder, gpu_count=len(gpu_names))
    finally:
        _database_retrying(lambda: worker_heartbeat(name=worker, gpu_names=gpu_names, current_run_id=None),
                           run_id=run_id, doing="marking the worker idle")
    if ended is None:
        return "lost-claim"
    result = _result_read(folder)
    return _database_retrying(
        lambda: run_settle(claim=claim, exit_code=ended.exit_code, result=result, folder=folder,
                           stop_asked=ended.stop_asked),
        run_id=run_id, doing="settling",
    )


@dataclass(frozen=True)
class EngineEnded:
    exit_code: int
    stop_asked: bool  # we sent SIGTERM (cancel or worker shutdown) before it ended


def _engine_supervise(*, claim: Claim, run: TrainingRun, folder: Path, gpu_count: int) -> EngineEnded | None:
    """Run the engine until it exits and say how it ended; None if the claim was lost meanwhile.

    The engine runs in its own session, so nothing reaches it unless we send it: if this function
    leaves by an exception, the engine is stopped (SIGTERM, so it checkpoints) before it goes on.
    """
    command = engine_command(kind=run.kind, folder=folder, gpu_count=gpu_count)
    # the project first, then whatever the worker's own PYTHONPATH holds (site folders on a GPU image)
    python_path = os.pathsep.join(filter(None, [str(settings.BASE_DIR), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the engine is plain Python
    with open(folder / ENGINE_LOG, "ab") as log:
        log.write(f"\n==== attempt {claim.attempt} on {claim.worker} at {timezone.now():%Y-%m-%d %H:%M:%S} UTC: "
                  f"{' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(os.getpid()), *command],
                                   cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        return _engine_watch(process, claim=claim, folder=folder)
    except BaseException:
        if process.poll() is None:
            logger.exception("run %s: supervising the engine failed; stopping it", claim.run_id)
            _stop_engine(process, grace_seconds=ENGINE_STOP_GRACE_SECONDS)
        raise


def _engine_watch(process: subprocess.Popen, *, claim: Claim, folder: Path) -> EngineEnded | None:
    """Heartbeat, copy metrics and pass on a cancel or a shutdown until the engine exits.

    A database error doesn't end the watch: the engine trains on, and the next heartbeat tries again
    on a fresh connection. But once no heartbeat has been recorded for half the stale window, the
    engine is asked to checkpoint and stop, so that it has ended before the reconciler may give the
    run to another worker: two engines never train in one folder. Had the run been given away
    meanwhile anyway, the next heartbeat that gets through finds the claim lost.
    """
    metrics = MetricsFollower(run_id=claim.run_id, path=folder / "metrics.jsonl")
    started_recorded = stop_sent = False
    last_heartbeat = last_metrics = 0.0
    last_recorded = time.monotonic()  # when a heartbeat last reached the database
    while True:
        exit_code = process.poll()
        now = time.monotonic()
        if exit_code is not None:
            _database_retrying(metrics.sync, run_id=claim.run_id, doing="copying the last metrics")
            return EngineEnded(exit_code=exit_code, stop_asked=stop_sent)
        try:
            if not started_recorded:
                claim.holding().update(engine_started_at=timezone.now())
                started_recorded = True
            if now - last_metrics >= settings.RLHF_METRICS_SYNC_SECONDS:
                last_metrics = now
                metrics.sync()
            if now - last_heartbeat >= settings.RLHF_RUN_HEARTBEAT_SECONDS:
                last_heartbeat = now
                if not claim.holding().update(heartbeat_at=timezone.now()):
                    # Someone else may hold the run now and train in this folder: the engine must
                    # write nothing more (a SIGTERM would make it save a checkpoint), so kill it.
                    logger.warning("run %s: claim of attempt %s lost; killing its engine", claim.run_id, claim.attempt)
                    _signal_engine(process, signal.SIGKILL)
                    process.wait()
                    return None
                last_recorded = now
                GpuWorker.objects.filter(hostname=claim.worker).update(last_heartbeat=timezone.now())
                cancel = TrainingRun.objects.filter(pk=claim.run_id).values_list("cancel_requested", flat=True).first()
                if (cancel or WorkerShutdown.requested) and not stop_sent:
                    logger.info("run %s: asking the engine to checkpoint and stop", claim.run_id)
                    _signal_engine(process, signal.SIGTERM)
                    stop_sent = True
        except DatabaseError as error:
            logger.warning("run %s: database error while supervising (%s)", claim.run_id, error)
            close_old_connections()
            silent = time.monotonic() - last_recorded
            if not stop_sent and silent > settings.RLHF_RUN_STALE_AFTER_SECONDS / 2:
                logger.warning("run %s: no heartbeat recorded for %.0f s; asking the engine to checkpoint and stop "
                               "before the run can be given to another worker", claim.run_id, silent)
                _signal_engine(process, signal.SIGTERM)
                stop_sent = True
        time.sleep(settings.RLHF_RUN_POLL_SECONDS)


def _database_retrying(work, *, run_id: int, doing: str):
    """Return work() once the database answers, trying again on a fresh connection for as long as the
    run can still be ours (its stale window); then let the error through."""
    deadline = time.monotonic() + settings.RLHF_RUN_STALE_AFTER_SECONDS
    while True:
        try:
            return work()
        except DatabaseError as error:
            if time.monotonic() >= deadline:
                raise
            logger.warning("run %s: database error while %s (%s); trying again", run_id, doing, error)
            close_old_connections()
            time.sleep(settings.RLHF_RUN_HEARTBEAT_SECONDS)


# The engine runs in its own session, so signals meant for the worker (a terminal's Ctrl-C, a process
# group kill) don't reach it by accident; but it must not outlive its worker either: a worker killed
# with -9 would leave it training beside the run's next attempt. So it starts under this small
# guardian, whose parent-death signal (Linux prctl PR_SET_PDEATHSIG) tells it that the worker died; it
# then sends the engine one SIGTERM (checkpoint and stop). Not the engine's own parent-death signal:
# the kernel sends that again each time a thread of the dying worker exits, and an engine's second
# SIGTERM kills it in the middle of its checkpoint. The guardian lets the worker's SIGTERM (sent to the
# whole group) reach the engine alone, and exits as the engine did. Elsewhere than Linux it only waits.
_LAUNCHER = """
import ctypes, os, signal, subprocess, sys

worker, command, engine, told = int(sys.argv[1]), sys.argv[2:], None, False


def worker_died(*_):
    global told
    if engine is not None and not told:
        told = True
        engine.send_signal(signal.SIGTERM)


signal.signal(signal.SIGUSR1, worker_died)
signal.signal(signal.SIGTERM, lambda *_: None)  # meant for the engine, which has it too (reset at exec)
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGUSR1)
except (AttributeError, OSError):
    pass
if os.getppid() != worker:
    sys.exit("the worker died before the engine started")
engine = subprocess.Popen(command)
if os.getppid() != worker:
    worker_died()
code = engine.wait()
if code < 0:
    if -code != signal.SIGKILL:
        signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


def _signal_engine(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _stop_engine(process: subprocess.Popen, *, grace_seconds: float) -> None:
    """Ask the engine to checkpoint and stop; kill it if it hasn't within the grace period."""
    _signal_engine(process, signal.SIGTERM)
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        _signal_engine(process, signal.SIGKILL)
        process.wait()


def _result_read(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "result.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


class MetricsFollower:
    """Copy new metrics.jsonl lines into MetricPoint rows (one per step, lines of one step merged) and progress."""

    def __init__(self, *, run_id: int, path: Path) -> None:
        self.run_id, self.path, self.offset = run_id, path, 0
        self.first_step: int | None = None
        self.started = time.monotonic()

    def sync(self) -> int:
        """Read what was appended since the last call; return how many lines were stored."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        if size < self.offset:  # rewritten on resume (lines after the checkpoint dropped): read again
            self.offset = 0
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data.rsplit(b"\n", 1)[0] + b"\n" if b"\n" in data else b""
        by_step: dict[int, dict] = {}
        for raw in complete.splitlines():
            try:
                line = json.loads(raw)
                step = int(line.pop("step"))
            except (ValueError, KeyError, TypeError):
                continue
            by_step.setdefault(step, {}).update(line)
        if by_step:
            metric_points_merge(run_id=self.run_id, by_step=by_step)
            self._progress(by_step)
        self.offset += len(complete)  # only once stored: after a database error the lines are read again
        return len(by_step)

    def _progress(self, by_step: dict[int, dict]) -> None:
        step = max(by_step)
        last = by_step[step]
        # training commands log total_steps; sample and score count what they have done
        total = last.get("total_steps") or last.get("prompts_total") or last.get("pairs_total")
        for done in ("prompts_done", "pairs_done"):
            if done in last:
                step = int(last[done])
        if self.first_step is None:
            self.first_step = min(by_step)
            self.started = time.monotonic()
        fields = {"step": step}
        if isinstance(total, int | float) and total > 0:
            fields["total_steps"] = int(total)
            done = step - self.first_step
            if done > 0:
                per_step = (time.monotonic() - self.started) / done
                fields["eta_seconds"] = int(max(0, total - step) * per_step)
        TrainingRun.objects.filter(pk=self.run_id).update(**fields)


def metric_points_merge(*, run_id: int, by_step: dict[int, dict]) -> None:
    """Store figures per step, merging into what a step already holds (a step may be logged twice)."""
    with transaction.atomic():
        existing = {
            point.step: point
            for point in MetricPoint.objects.select_for_update().filter(run_id=run_id, step__in=list(by_step))
        }
        new, changed = [], []
        for step, values in by_step.items():
            logged_at = _time_of(values)
            if step in existing:
                point = existing[step]
                point.values = {**point.values, **values}
                point.logged_at = logged_at or point.logged_at
                changed.append(point)
            else:
                new.append(MetricPoint(run_id=run_id, step=step, values=values, logged_at=logged_at))
        MetricPoint.objects.bulk_create(new, batch_size=500, ignore_conflicts=True)
        MetricPoint.objects.bulk_update(changed, ["values", "logged_at"], batch_size=500)


def _time_of(values: dict):
    seconds = values.get("time")
    if not isinstance(seconds, int | float):
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, tz=UTC)


# ---- settle ------------------------------------------------------------------------------------------


def run_settle(
    *, claim: Claim, exit_code: int | None, result: dict | None, folder: Path | None, error: str = "",
    retry: bool = True, stop_asked: bool = False,
) -> str:
    """Settle the attempt from result.json (never from torchrun's exit code); return the new state.

    succeeded → the model version is registered (once: it is one-to-one with the run) in the same
    transaction; stopped → cancelled if a person asked, else queued again (the worker shut down or
    lost the database: not the run's fault, so the attempt is given back); failed with exit 2 →
    failed for good; a crash →
    queued again while attempts remain. ``stop_asked``: we had sent SIGTERM; an engine that died of it
    before it could save (it was still starting) stopped as asked all the same.
    """
    status = (result or {}).get("status")
    if status is None and stop_asked:
        status = "stopped"  # it resumes from its last complete checkpoint, as after any stop
    engine_error = (result or {}).get("error") or ""
    now = timezone.now()
    with transaction.atomic():
        run = claim.holding().select_for_update(of=("self",)).select_related("project", "input_model", "snapshot").first()
        if run is None:
            return "lost-claim"
        run.result, run.exit_code = result, exit_code
        fields = ["result", "exit_code", "state", "error", "finished_at", "heartbeat_at", "max_attempts"]
        if status == "succeeded":
            run.state, run.error, run.finished_at = RunState.SUCCEEDED, "", now
            _output_register(run=run, result=result, folder=folder)
            from training.services.reward_checks import reward_check_ingest_for_run
            from training.services.sampling import sampling_job_ingest_for_run

            sampling_job_ingest_for_run(run=run, folder=folder)
            reward_check_ingest_for_run(run=run, folder=folder)
        elif status == "stopped" and run.cancel_requested:
            run.state, run.error, run.finished_at = RunState.CANCELLED, "", now
        elif status == "stopped":
            run.state, run.error, run.finished_at = RunState.QUEUED, "", None
            run.max_attempts += 1
        elif exit_code == EXIT_BAD_INPUT or not retry:
            run.state, run.finished_at = RunState.FAILED, now
            run.error = engine_error or error or f"The engine refused its input (exit {exit_code})."
        else:
            why = engine_error or error or _log_tail_line(folder) or f"the engine exited with {exit_code}"
            run.error = f"Attempt {run.attempt} crashed: {why}"
            if run.attempt < run.max_attempts and not run.cancel_requested:
                run.state, run.finished_at = RunState.QUEUED, None
            else:
                run.state, run.finished_at = (RunState.CANCELLED if run.cancel_requested else RunState.FAILED), now
                if run.state == RunState.FAILED:
                    run.error = f"Gave up after {run.attempt} attempts. {run.error}"
        run.heartbeat_at = now
        run.save(update_fields=fields)
        if run.state == RunState.QUEUED:
            run_dispatch(run=run)
        elif run.state in RunState.finished():
            _after_settle(run_id=run.pk)
    logger.info("run %s attempt %s settled: %s", run.pk, claim.attempt, run.state)
    return run.state


def _after_settle(*, run_id: int) -> None:
    """Let the loop take its next step now rather than at its next beat tick."""
    from training.tasks import loop_tick_task

    project_id = TrainingRun.objects.values_list("project_id", flat=True).get(pk=run_id)
    transaction.on_commit(lambda: loop_tick_task.delay(project_id))


def _output_register(*, run: TrainingRun, result: dict, folder: Path | None) -> ModelVersion | None:
    spec = RUN_SPECS[run.kind]
    if spec.output_kind is None:
        return None
    model_folder = Path((result.get("paths") or {}).get("model") or (folder / "model"))
    name = run.output_name or f"{run.kind}-{run.pk}"
    return ModelVersion.objects.create(
        project=run.project, kind=spec.output_kind, name=name, storage_path=data_relative(model_folder),
        parent=run.input_model, run=run, snapshot=run.snapshot, metrics=result.get("metrics") or {},
        created_by=run.created_by,
    )


def _log_tail_line(folder: Path | None) -> str:
    """The last non-empty line of the engine log (a traceback's last line names the error)."""
    if folder is None:
        return ""
    try:
        with open(folder / ENGINE_LOG, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 4096))
            lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:500] if lines else ""


def run_log_tail(*, run: TrainingRun, max_bytes: int = 64 * 1024) -> str:
    """Return the end of the run's engine log (what a person reads to see why it failed)."""
    path = data_path(run.run_dir) / ENGINE_LOG if run.run_dir else None
    if path is None or not path.is_file():
        return ""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - max_bytes))
        text = handle.read().decode(errors="replace")
    if size > max_bytes:
        text = text.split("\n", 1)[-1]
    return text
