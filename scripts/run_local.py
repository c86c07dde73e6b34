"""Run the whole platform on one machine: web (gunicorn), a Celery worker, a GPU-queue worker and beat.

`make run` calls this after installing. It migrates, seeds the demo, collects static files,
starts the four processes and stops them all on Ctrl-C (or when any one of them dies).
Embedded defaults: SQLite without DATABASE_URL, kombu's filesystem broker without REDIS_URL.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)


def _prepare_embedded_dirs(var_dir: Path) -> None:
    for sub in ("broker/queue", "broker/processed", "broker/control", "celery-results", "data", "media"):
        (var_dir / sub).mkdir(parents=True, exist_ok=True)


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    port = os.environ.get("PORT", "8000")
    host = os.environ.get("HOST", "127.0.0.1")
    var_dir = Path(os.environ.get("RLHF_VAR_DIR", ROOT / "var"))
    _prepare_embedded_dirs(var_dir)

    _manage("migrate", "--noinput", "-v", "0")
    _manage("createcachetable")
    _manage("seed_demo")
    _manage("ranking_seed_demo")
    _manage("training_seed_demo")
    _manage("collectstatic", "--noinput", "-v", "0")

    commands = {
        "web": [str(BIN / "gunicorn"), "config.wsgi:application", "--bind", f"{host}:{port}",
                "--workers", os.environ.get("WEB_CONCURRENCY", "2"), "--access-logfile", "-"],
        "worker": [str(BIN / "celery"), "-A", "config", "worker", "-Q", "default", "--concurrency", "2",
                   "--loglevel", "INFO", "--hostname", "local@%h"],
        # the laptop's own "GPU worker": one run at a time, on the CPU when there is no GPU
        "gpu-worker": [str(BIN / "celery"), "-A", "config", "worker", "-Q", "gpu", "--pool", "solo",
                       "--prefetch-multiplier", "1", "--loglevel", "INFO", "--hostname", "local-gpu@%h"],
        "beat": [str(BIN / "celery"), "-A", "config", "beat", "--loglevel", "INFO",
                 "--schedule", str(var_dir / "celerybeat-schedule")],
    }
    processes = {name: subprocess.Popen(cmd, cwd=ROOT, start_new_session=True) for name, cmd in commands.items()}

    password = os.environ.get("DEMO_PASSWORD") or "rlhf-demo-pass"
    print(
        f"\n  rlhf-studio is starting on http://{host}:{port}/  (health: http://{host}:{port}/healthz)\n"
        f"  demo logins: admin, manager, reviewer, labeler1, labeler2, labeler3, engineer\n"
        f"  password: {password}\n  Ctrl-C stops web, workers and beat.\n",
        flush=True,
    )

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    parent = os.getppid()
    while not stopping:
        if os.getppid() != parent:  # `make` was killed without passing the signal on
            break
        for name, proc in processes.items():
            if proc.poll() is not None:
                print(f"{name} exited with {proc.returncode}; stopping the others", file=sys.stderr)
                exit_code = proc.returncode or 1
                stopping = True
                break
        time.sleep(0.5)

    for proc in processes.values():
        if proc.poll() is None:
            proc.terminate()  # the leader shuts its own children down (celery's warm shutdown)
    deadline = time.monotonic() + 20
    for proc in processes.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
