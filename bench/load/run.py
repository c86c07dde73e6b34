"""Load generator: simulated labelers ranking through the HTTP API of a real gunicorn, loopback only, bounded in time.

    .venv/bin/python -m bench.load.run bench/load/scenarios/team_think.json bench/load/scenarios/flat_out.json \\
        [--workers 4] [--out bench/results/load.json]

It builds the largest task count the scenarios name in a scratch PostgreSQL database
(`rlhf_bench_load`, dropped and made again; `bench.next_scale.build`: K = 4, ~1,000 tasks already
ranked by others), gives every simulated labeler an account, a membership and an API token, and
starts `gunicorn config.wsgi` (`--workers`, default 4, sync workers, 30 s timeout, as
docker-compose runs it) on 127.0.0.1. Each scenario then runs its labelers as threads (stdlib
`http.client`, a fresh connection per request): `POST /api/ranking-tasks/next/`, think for a time
drawn uniformly from `think_seconds`, then `POST …/rankings/` with an `Idempotency-Key` (or, with
probability `skip_share`, `POST …/skip/`), until `duration_seconds` have passed (labelers start
spread over `ramp_seconds`). It reports, per request kind, the count, status codes and latency
percentiles, and rankings stored per second over the run; then it checks the database: no task holds
more rankings than the project wants, no (task, labeler) pair twice, and every submission answered
2xx is stored.

A scenario file is JSON: {"description", "tasks", "labelers", "think_seconds": [low, high],
"skip_share", "duration_seconds", "ramp_seconds"}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DB_NAME = "rlhf_bench_load"


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else float("nan")


class Recorder:
    """Every request's kind, status and latency; every acknowledged ranking id. Thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, Counter] = defaultdict(Counter)
        self.acknowledged: list[int] = []
        self.errors: list[str] = []
        self.submitted_at: list[float] = []

    def add(self, kind: str, status: int, ms: float) -> None:
        with self.lock:
            self.latencies[kind].append(ms)
            self.statuses[kind][status] += 1


def _request(port: int, method: str, path: str, token: str, body: dict | None = None, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        payload = json.dumps(body).encode() if body is not None else b""
        connection.request(method, path, body=payload, headers={
            "Authorization": f"Token {token}", "Content-Type": "application/json", "Host": "127.0.0.1",
            **(headers or {}),
        })
        response = connection.getresponse()
        data = response.read()
        return response.status, data
    finally:
        connection.close()


def labeler_loop(*, port: int, token: str, project_id: int, scenario: dict, deadline: float, start_at: float,
                 recorder: Recorder, rng: random.Random) -> None:
    time.sleep(max(0.0, start_at - time.monotonic()))
    low, high = scenario["think_seconds"]
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            status, data = _request(port, "POST", f"/api/ranking-tasks/next/?project={project_id}", token)
        except OSError as error:  # a dropped connection is a failure the report counts
            recorder.add("next", 599, (time.perf_counter() - started) * 1000)
            recorder.errors.append(f"next: {error!r}")
            continue
        recorder.add("next", status, (time.perf_counter() - started) * 1000)
        if status == 204:
            return
        if status != 200:
            recorder.errors.append(f"next: {status} {data[:200]!r}")
            time.sleep(1)
            continue
        task = json.loads(data)
        think = rng.uniform(low, high)
        if time.monotonic() + think > deadline:
            return  # walks away holding the lease, as a labeler at the end of a shift
        time.sleep(think)
        if rng.random() < scenario.get("skip_share", 0):
            kind, path, body, headers = "skip", f"/api/ranking-tasks/{task['id']}/skip/", {"reason": "load"}, {}
        else:
            order = [[response["id"]] for response in task["responses"]]
            rng.shuffle(order)
            kind, path = "submit", f"/api/ranking-tasks/{task['id']}/rankings/"
            body = {"order": order, "time_spent_ms": int(think * 1000)}
            headers = {"Idempotency-Key": str(uuid.uuid4())}
        started = time.perf_counter()
        try:
            status, data = _request(port, "POST", path, token, body, headers)
        except OSError as error:
            recorder.add(kind, 599, (time.perf_counter() - started) * 1000)
            recorder.errors.append(f"{kind}: {error!r}")
            continue
        recorder.add(kind, status, (time.perf_counter() - started) * 1000)
        if kind == "submit" and status == 201:
            with recorder.lock:
                recorder.acknowledged.append(json.loads(data)["id"])
                recorder.submitted_at.append(time.monotonic())
        elif status >= 300:
            recorder.errors.append(f"{kind}: {status} {data[:200]!r}")


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (Linux /proc), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _server_pids(server: subprocess.Popen) -> list[int]:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    return [server.pid, *(int(pid) for pid in children.read_text().split())] if children.exists() else [server.pid]


def _database_pids() -> list[int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


def run_scenario(*, scenario: dict, port: int, project, tokens: list[str], server: subprocess.Popen,
                 seed: int = 0) -> dict:
    from django.db.models import Count

    from ranking.models import Ranking

    labelers = scenario["labelers"]
    assert labelers <= len(tokens)
    rankings_before = Ranking.objects.filter(task__project=project).count()
    recorder = Recorder()
    # CPU spent by the web workers and by the database backends serving them: what the requests cost
    # whatever share of this (shared) machine they got; backends are sampled as they come and go
    app_pids = _server_pids(server)
    app_cpu_before = _cpu_seconds(app_pids)
    db_cpu: dict[int, tuple[float, float]] = {}
    sampling = threading.Event()

    def sample_database() -> None:
        from django.db import connection

        try:
            while not sampling.is_set():
                for pid in _database_pids():
                    now_cpu = _cpu_seconds([pid])
                    first = db_cpu.get(pid, (now_cpu, now_cpu))[0]
                    db_cpu[pid] = (first, now_cpu)
                sampling.wait(0.5)
        finally:
            connection.close()  # this thread's own connection: the database is dropped at the end

    sampler = threading.Thread(target=sample_database, daemon=True)
    sampler.start()
    load_before = os.getloadavg()[0]
    began = time.monotonic()
    deadline = began + scenario["duration_seconds"]
    threads = []
    for index in range(labelers):
        start_at = began + scenario.get("ramp_seconds", 0) * index / max(labelers, 1)
        thread = threading.Thread(target=labeler_loop, kwargs=dict(
            port=port, token=tokens[index], project_id=project.pk, scenario=scenario, deadline=deadline,
            start_at=start_at, recorder=recorder, rng=random.Random(seed * 10_000 + index),
        ), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(timeout=scenario["duration_seconds"] + 120)
    elapsed = time.monotonic() - began
    sampling.set()
    sampler.join()
    app_cpu = _cpu_seconds(app_pids) - app_cpu_before
    database_cpu = sum(last - first for first, last in db_cpu.values())
    served = sum(len(values) for values in recorder.latencies.values())
    cpu_ms = (app_cpu + database_cpu) * 1000 / max(served, 1)

    kinds = {}
    for kind, values in sorted(recorder.latencies.items()):
        kinds[kind] = {
            "n": len(values),
            "statuses": dict(recorder.statuses[kind]),
            "median_ms": round(statistics.median(values), 1),
            "p95_ms": round(_percentile(values, 0.95), 1),
            "p99_ms": round(_percentile(values, 0.99), 1),
            "max_ms": round(max(values), 1),
        }
    every = [ms for values in recorder.latencies.values() for ms in values]

    # correctness, read from the database after the run
    rankings = Ranking.objects.filter(task__project=project)
    per_task_max = rankings.values("task").annotate(n=Count("pk")).order_by("-n").values_list("n", flat=True).first()
    duplicate_pairs = (
        rankings.exclude(labeler=None).values("task", "labeler").annotate(n=Count("pk")).filter(n__gt=1).count()
    )
    stored = set(Ranking.objects.filter(pk__in=recorder.acknowledged).values_list("pk", flat=True))
    return {
        "scenario": scenario,
        "elapsed_s": round(elapsed, 1),
        "requests": kinds,
        "all_requests_p95_ms": round(_percentile(every, 0.95), 1),
        "rankings_acknowledged": len(recorder.acknowledged),
        "rankings_per_s": round(len(recorder.acknowledged) / scenario["duration_seconds"], 2),
        "rankings_stored_during_run": rankings.count() - rankings_before,
        "cpu": {
            "web_workers_s": round(app_cpu, 1),
            "database_backends_s": round(database_cpu, 1),
            "ms_per_request": round(cpu_ms, 1),
            # what two cores of our own would serve at full use (web + database, nothing else running)
            "requests_per_s_on_2_free_cores": round(2000 / cpu_ms, 1) if cpu_ms else None,
            "requests_per_s_offered": round(served / elapsed, 1),
            "load_average_1min_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        },
        "errors": recorder.errors[:20],
        "error_count": len(recorder.errors),
        "correct": {
            "most_rankings_on_one_task": per_task_max,
            "rankings_per_task": project.rankings_per_task,
            "no_task_over_served": (per_task_max or 0) <= project.rankings_per_task,
            "duplicate_task_labeler_pairs": duplicate_pairs,
            "acknowledged_but_not_stored": len(set(recorder.acknowledged) - stored),
            "acknowledged_twice": len(recorder.acknowledged) - len(set(recorder.acknowledged)),
        },
    }


def _labelers(project, count: int) -> list[str]:
    from django.contrib.auth import get_user_model

    from annotation.models import Membership, Role
    from annotation.services.api_tokens import api_token_create

    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"load-{project.pk}-{i}") for i in range(count)]
    )
    Membership.objects.bulk_create([Membership(project=project, user=user, role=Role.LABELER) for user in users])
    return [api_token_create(user=user, name="load")[1] for user in users]


def _gunicorn(port: int, workers: int, env: dict) -> subprocess.Popen:
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--timeout", "30", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    for _ in range(120):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz", headers={"Host": "127.0.0.1"})
            if connection.getresponse().status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.5)
    server.terminate()
    raise RuntimeError("gunicorn did not answer /healthz")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="+", type=Path)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database afterwards")
    args = parser.parse_args()
    scenarios = [(path.name, json.loads(path.read_text())) for path in args.scenarios]

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",  # DEBUG off; the database below, not SQLite
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/1"),
        "CELERY_BROKER_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/1"),
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update(env)
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB_NAME], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB_NAME], check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from bench.next_scale import build

    results = {}
    server = None
    try:
        projects = {}
        for _name, scenario in scenarios:
            size = scenario["tasks"]
            if size not in projects:
                project, _ = build(size=size, slug=f"load-{size}", prompts=False)
                projects[size] = (project, _labelers(project, max(s["labelers"] for _, s in scenarios)))
        server = _gunicorn(args.port, args.workers, env)
        for seed, (name, scenario) in enumerate(scenarios):
            project, tokens = projects[scenario["tasks"]]
            print(f"{name}: {scenario['description']}", flush=True)
            results[name] = run_scenario(scenario=scenario, port=args.port, project=project, tokens=tokens,
                                         server=server, seed=seed)
            print(json.dumps(results[name], indent=1, default=str), flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        from django.db import connections

        connections.close_all()
        if not args.keep:
            subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB_NAME], check=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
