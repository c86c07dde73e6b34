"""How quickly the platform reacts: trigger → engine start on an idle GPU worker, and a metrics line
written by the engine → the API showing it. Both targets are ≤ 5 s.

    .venv/bin/python bench/loop_latency.py [--runs 5] [--out bench/results/loop-latency.json]

It uses the machine's PostgreSQL (a fresh database `rlhf_bench_latency`) and Redis (db 8), starts a
real Celery worker on the `default` and `gpu` queues (snapshots, runs), and reads the API in this process through Django's test
client (the real views, serializers and database; no HTTP server in between).
Run 1: `make-tiny` runs triggered one after another on an idle worker (engine start = the moment
the worker launched the subprocess). Run 2: an `sft` run logging every step; the API is polled
every 50 ms and each point's first appearance is compared with the `time` the engine wrote in it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "rlhf_bench_latency"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="make-tiny runs for the trigger → start figure")
    parser.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    args = parser.parse_args()

    data_root = Path(tempfile.mkdtemp(prefix="rlhf-bench-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        "REDIS_URL": "redis://127.0.0.1:6379/8",
        "RLHF_DATA_ROOT": str(data_root),
        "RLHF_MODEL_IMPORT_ROOTS": str(data_root),
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "2",
    }
    os.environ.update(env)
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB_NAME], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB_NAME], check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run(["redis-cli", "-n", "8", "FLUSHDB"], check=True, capture_output=True)

    import django

    sys.path.insert(0, str(ROOT))
    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from annotation.models import Role
    from annotation.services.projects import membership_set, project_create
    from training.models import ModelVersion, TrainingRun
    from training.services.model_versions import model_make_tiny
    from training.services.runs import run_trigger

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default,gpu", "--pool", "solo",
         "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "-n", "bench-gpu@%h"],
        cwd=ROOT, env={**env, "RLHF_METRICS_SYNC_SECONDS": os.environ.get("RLHF_METRICS_SYNC_SECONDS", "2")},
    )
    try:
        time.sleep(8)  # the worker connects and registers
        project = project_create(name="Latency", slug="latency")
        user = get_user_model().objects.create_user("bench-manager", password="x" * 12)
        membership_set(project=project, user=user, role=Role.MANAGER)
        api = APIClient(SERVER_NAME="localhost")
        api.force_authenticate(user)

        trigger_to_start = []
        for index in range(args.runs):
            run = model_make_tiny(project=project, name=f"tiny-{index}")
            run = _wait(lambda run=run: TrainingRun.objects.filter(pk=run.pk, state="succeeded").first(), 120)
            trigger_to_start.append((run.engine_started_at - run.created_at).total_seconds())

        base = ModelVersion.objects.get(project=project, name="tiny-0")
        _demonstrations(project, user, 64)
        run = run_trigger(project=project, kind="sft", input_model=base, config_overrides={
            "max_steps": 40, "per_device_batch_size": 2, "max_length": 64, "log_every": 1, "save_every": 1000,
        })
        seen: dict[int, float] = {}
        after = 0  # steps start at 1
        while True:
            answer = api.get(f"/api/runs/{run.pk}/metrics/", {"after": after}).json()
            now = time.time()
            for point in answer["points"]:
                seen.setdefault(point["step"], now - point["time"])
                after = max(after, point["step"])
            run.refresh_from_db()
            if run.state in ("succeeded", "failed", "cancelled") and after >= (run.step or 0):
                break
            time.sleep(0.05)
        line_to_api = list(seen.values())
    finally:
        worker.terminate()
        worker.wait(timeout=60)

    figures = {
        "trigger_to_engine_start_s": _summary(trigger_to_start),
        "metrics_line_to_api_s": _summary(line_to_api),
        "metrics_sync_seconds": float(os.environ.get("RLHF_METRICS_SYNC_SECONDS", "2")),
        "sft_state": run.state,
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _demonstrations(project, author, count: int) -> None:
    from django.utils import timezone

    from annotation.models import Dialogue, DialogueStatus, Turn

    for index in range(count):
        dialogue = Dialogue.objects.create(project=project, author=author, status=DialogueStatus.ACCEPTED,
                                           accepted_at=timezone.now())
        Turn.objects.create(dialogue=dialogue, position=0, role="user", content=f"Count to {index}.")
        Turn.objects.create(dialogue=dialogue, position=1, role="assistant", content=" ".join(map(str, range(index % 9 + 1))))


def _wait(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError("the run did not finish")


def _summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "median": round(statistics.median(ordered), 3),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
        "min": round(ordered[0], 3),
        "max": round(ordered[-1], 3),
    }


if __name__ == "__main__":
    sys.exit(main())
