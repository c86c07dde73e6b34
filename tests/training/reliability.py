"""Helpers of the reliability tests: real Celery workers and beat that a test starts, kills and
restarts; the engine processes of a run folder; what a run folder says; a tiny base model built once.

Every process a test starts is tracked by its ``Processes``, and ``close()`` ends only those (and the
engines running under the test's own data root), never anything found by name.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import redis
from django.conf import settings

from annotation.models import Project
from tests.conftest import ROOT, celery_worker_env
from tests.training.conftest import FAST_WORKER_ENV, wait_for
from training.models import GpuWorker, ModelVersion, TrainingRun
from training.services.model_versions import model_register_folder
from training.services.storage import data_path

# One thread per engine: two OpenMP threads on two cores shared with other jobs spin at every barrier
# and make a tiny model's steps ten times slower.
RELIABILITY_ENV = {**FAST_WORKER_ENV, "OMP_NUM_THREADS": "1"}


def sft_config(*, max_steps: int = 200, save_every: int = 5) -> dict:
    """An SFT of the tiny model that lasts seconds, with a checkpoint every few steps for a kill to find."""
    return {"max_steps": max_steps, "per_device_batch_size": 1, "max_length": 32, "log_every": 5,
            "save_every": save_every}


# ---- processes ---------------------------------------------------------------------------------------


@dataclass
class Worker:
    """A Celery worker serving the gpu (and default) queue; ``name`` is its GpuWorker row and run.worker."""

    name: str
    process: subprocess.Popen
    log: Path

    def kill(self) -> None:
        """kill -9, as the OOM killer or a lost node would."""
        self.process.kill()
        self.process.wait(timeout=60)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Processes:
    """The workers and beat one test starts; ``close()`` stops those still alive and kills leftover engines."""

    def __init__(self, *, data_root: Path, logs: Path) -> None:
        self.data_root, self.logs = data_root, logs
        self.started: list[subprocess.Popen] = []

    def worker(self, name: str, *, queues: str = "default,gpu", **env: str) -> Worker:
        """Start a worker (solo pool, INFO log in its own file) and wait until it registered as a GPU worker."""
        log = self.logs / f"worker-{name}.log"
        with open(log, "ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues, "--pool", "solo",
                 "--loglevel", "INFO", "--without-heartbeat", "--without-gossip", "--without-mingle",
                 "--hostname", f"{name}-{os.getpid()}@%h"],
                cwd=ROOT, env=celery_worker_env(**{**RELIABILITY_ENV, "RLHF_WORKER_NAME": name, **env}),
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.started.append(process)
        worker = Worker(name=name, process=process, log=log)

        def registered() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"worker {name} exited with {process.returncode}:\n{worker.log_text()[-3000:]}")
            return GpuWorker.objects.filter(hostname=name).exists()

        wait_for(registered, timeout=120, what=f"worker {name} to register")
        return worker

    def beat(self, **env: str) -> subprocess.Popen:
        """Start celery beat (the database scheduler, as in production) with the given intervals."""
        with open(self.logs / "beat.log", "ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO", "--pidfile="],
                cwd=ROOT, env=celery_worker_env(**{**RELIABILITY_ENV, **env}),
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.terminate()  # a worker's warm shutdown: its engine checkpoints and stops
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for pid in engine_pids(self.data_root):
            _kill(pid)
        broker_flush()  # no message of this test (a killed worker's unacked one) reaches the next test's workers


def engine_pids(under: Path) -> list[int]:
    """The pids of the engine processes whose run folder lies under ``under`` (a run folder or a data root)."""
    prefix = str(under)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue  # gone meanwhile
        if "training.engine" in argv and "--run-dir" in argv:
            folder = argv[argv.index("--run-dir") + 1]
            if folder == prefix or folder.startswith(prefix + os.sep):
                found.append(int(entry.name))
    return found


def kill_engines(folder: Path) -> list[int]:
    """kill -9 every engine process of the run folder; return their pids."""
    pids = engine_pids(folder)
    for pid in pids:
        _kill(pid)
    wait_for(lambda: not engine_pids(folder), timeout=30, what=f"the engines of {folder} to die")
    return pids


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def broker_flush() -> None:
    """FLUSHDB on the test broker's own Redis database (never FLUSHALL)."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        client.flushdb()
    finally:
        client.close()


class DatabaseProxy:
    """A TCP proxy in front of PostgreSQL that a test can cut (open connections dropped, new ones
    refused) and restore: a worker whose DATABASE_URL goes through it loses the database at will."""

    def __init__(self) -> None:
        database = settings.DATABASES["default"]
        self.upstream = (database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_off = threading.Event()
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def database_url(self) -> str:
        database = settings.DATABASES["default"]
        return f"postgres://{database['USER']}@127.0.0.1:{self.port}/{database['NAME']}"

    def cut(self) -> None:
        self.cut_off.set()
        with self.lock:
            for sock in self.open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self.open.clear()

    def restore(self) -> None:
        self.cut_off.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.cut_off.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.close()


# ---- what a run folder says --------------------------------------------------------------------------


def run_folder(run: TrainingRun) -> Path:
    return data_path(run.run_dir)


def complete_checkpoints(folder: Path) -> list[Path]:
    """The run's checkpoints holding their COMPLETE marker, oldest step first."""
    checkpoints = folder / "checkpoints"
    if not checkpoints.is_dir():
        return []
    found = [path for path in checkpoints.glob("checkpoint-*") if (path / "COMPLETE").is_file()]
    return sorted(found, key=lambda path: int(path.name.rsplit("-", 1)[1]))


def engine_starts(folder: Path) -> int:
    """How many times a worker started the engine on this folder (engine.log's header lines)."""
    log = folder / "engine.log"
    return log.read_text(errors="replace").count("\n==== attempt ") if log.exists() else 0


def logged_steps(folder: Path) -> list[int]:
    """The steps of metrics.jsonl, in file order."""
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if line.strip()]


def result_json(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text())


# ---- a tiny base model -------------------------------------------------------------------------------


@functools.cache
def _tiny_model_built() -> Path:
    run_dir = Path(tempfile.mkdtemp(prefix="rlhf-reliability-tiny-"))
    atexit.register(shutil.rmtree, run_dir, True)
    (run_dir / "config.json").write_text("{}")
    subprocess.run(
        [sys.executable, "-m", "training.engine", "make-tiny", "--run-dir", str(run_dir)],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
        check=True, capture_output=True, timeout=300,
    )
    return run_dir / "model"


def tiny_base(project: Project) -> ModelVersion:
    """Register a copy of the tiny model (made once per session by make-tiny) in the test's data root."""
    folder = data_path("models/tiny-base")
    shutil.copytree(_tiny_model_built(), folder)
    return model_register_folder(project=project, name="tiny-base", path=str(folder))

