"""How long `next` takes for one labeler at 10,000 and at 1,000,000 tasks: the pick must not grow with the project.

    .venv/bin/python bench/next_scale.py [--sizes 10000 1000000] [--requests 300] [--out bench/results/next-scale.json]
        [--database rlhf_bench_next]

For each size it builds, in a scratch PostgreSQL database (`--database`, default `rlhf_bench_next`, dropped
and made again; the schema by `migrate`; the cache and broker are REDIS_URL and TEST_CACHE_URL), one project holding that many ranking tasks (K = 4 answers each, SQL
`generate_series`; about 1,000 of them already ranked once or twice by other labelers, spread over
the table) and as many prompts in the demonstration queue (the oldest tenth with a submitted
demonstration, as a queue served oldest first looks after a while). Then one labeler works through the real HTTP API in this process (Django's test
client: the real URL routing, middleware, authentication, views, serializers and database, no
socket): `POST /api/ranking-tasks/next/` then `POST …/rankings/` of the task it got, `--requests`
times, and `POST /api/dialogues/next-prompt/` then discards the draft (so the next call picks
again). Only the `next` calls are timed (after 20 untimed warm-up rounds); the submit/discard
timings are printed beside them, and so is what a request that reads only the project costs on
the same machine at the same moment (`request_floor`), and one `SELECT 1`. Beside the wall times, what
each kind of call cost in CPU whatever share of the machine it got: this process (`process_time`:
Django, DRF, the driver) and its PostgreSQL backend (`/proc/<pid>/stat`), per call, and the SQL
statements per call; and the load average before and after. `--baseline` also times the candidate query `next` ran before
issue 11 (correlated counts of rankings and live leases for every open task, then a sort) on the
same tables, a few times at each size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "rlhf_bench_next"
RANKED = 1_000  # tasks other labelers already ranked, as in the measurement
K = 4


def _setup_django(db_name: str) -> None:
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db_name}",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/1"),
        "TEST_CACHE_URL": os.environ.get("TEST_CACHE_URL", "redis://127.0.0.1:6379/2"),
    })
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", db_name], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", db_name], check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=os.environ, check=True)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test client's host, as in the suite


def build(*, size: int, slug: str, prompts: bool = True, vacuum: bool = False):
    """Make a project of ``size`` ranking tasks (and ``size`` prompts), its labeler and a few others; return them."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotation.models import Membership, Project, Role

    started = time.perf_counter()
    project = Project.objects.create(name=f"Bench {size}", slug=slug, rankings_per_task=3)
    users = get_user_model().objects
    labeler = users.create_user(username=f"{slug}-labeler", password="x")
    others = [users.create_user(username=f"{slug}-other-{i}", password="x") for i in range(2)]
    for user in [labeler, *others]:
        Membership.objects.create(project=project, user=user, role=Role.LABELER)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO ranking_rankingtask (project_id, context, status, source, purpose, is_gold, import_hash,
                                             created_at, rankings_count, leases_count)
            SELECT %s, jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'Question number ' || g)),
                   'open', 'api', 'ranking', false, '', now(), 0, 0
            FROM generate_series(1, %s) AS g
            """,
            [project.pk, size],
        )
        cursor.execute(
            """
            INSERT INTO ranking_response (task_id, content, generator, position)
            SELECT t.id, 'Answer ' || p || ' to question ' || t.id, 'bench-model', p
            FROM ranking_rankingtask t CROSS JOIN generate_series(0, %s) AS p
            WHERE t.project_id = %s
            """,
            [K - 1, project.pk],
        )
        # ~1,000 tasks ranked by others, spread over the table: each once, every second one twice
        step = max(size // RANKED, 1)
        for index, other in enumerate(others):
            cursor.execute(
                """
                INSERT INTO ranking_ranking (task_id, labeler_id, is_imported, "order", flags, scores, all_bad,
                                             time_spent_ms, idempotency_key, created_at)
                SELECT t.id, %s, false,
                       (SELECT jsonb_agg(jsonb_build_array(r.id) ORDER BY r.position) FROM ranking_response r
                        WHERE r.task_id = t.id),
                       '{}', '{}', false, 20000, '', now()
                FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM ranking_rankingtask
                      WHERE project_id = %s) t
                WHERE t.n %% %s = 0
                """,
                [other.pk, project.pk, step * (index + 1)],
            )
        cursor.execute(
            """
            UPDATE ranking_rankingtask t SET rankings_count = r.n
            FROM (SELECT task_id, count(*) AS n FROM ranking_ranking GROUP BY task_id) r
            WHERE t.id = r.task_id AND t.project_id = %s
            """,
            [project.pk],
        )
        if prompts:
            cursor.execute(
                """
                INSERT INTO annotation_prompt (project_id, text, text_hash, source, is_active, held_out, created_at)
                SELECT %s, 'Write about topic ' || g, md5(%s || '-' || g), 'imported', true, false, now()
                FROM generate_series(1, %s) AS g
                """,
                [project.pk, slug, size],
            )
            # the oldest tenth of the queue already has its demonstration (submitted by another
            # labeler), as a queue served oldest first looks after a while, with its counts
            cursor.execute(
                """
                WITH done AS (
                    INSERT INTO annotation_dialogue (project_id, author_id, prompt_id, status, version, round,
                                                     source, import_hash, created_at, updated_at, submitted_at)
                    SELECT %s, %s, p.id, 'submitted', 2, 1, 'written', '', now(), now(), now()
                    FROM annotation_prompt p WHERE p.project_id = %s ORDER BY p.id LIMIT %s
                    RETURNING prompt_id
                )
                UPDATE annotation_prompt SET demonstrations_count = 1 WHERE id IN (SELECT prompt_id FROM done)
                """,
                [project.pk, others[0].pk, project.pk, size // 10],
            )
        # VACUUM as autovacuum leaves a table: the UPDATEs above leave an index entry dead for every
        # task counted and prompt done, right where `next` starts its walk (a tenth of the prompts: at a
        # million, 500 index pages read per next-prompt until vacuumed)
        cursor.execute("VACUUM ANALYZE" if vacuum else "ANALYZE")
    made = f"{size:,} tasks ({size * K:,} answers)" + (f" and {size:,} prompts" if prompts else "")
    print(f"  built {made} in {time.perf_counter() - started:.0f} s", flush=True)
    return project, labeler


def _backend_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one PostgreSQL backend (same machine, Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _figures(values: list[float]) -> dict:
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values), 2),
        "p95_ms": round(_percentile(values, 0.95), 2),
        "max_ms": round(max(values), 2),
    }


def time_next(*, project, labeler, requests: int, warmup: int = 20) -> dict:
    """Time `next` through the API, alternating with the submit (or discard) that makes the next call pick again."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(labeler)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    figures: dict[str, list[float]] = {"ranking_next": [], "ranking_submit": [], "prompt_next": [], "prompt_discard": []}
    cpu = {kind: {"web_s": 0.0, "db_s": 0.0} for kind in ("ranking_next", "prompt_next")}
    queries = {}

    def timed_call(kind: str, call):
        """Run ``call``; return its answer and wall milliseconds, adding its CPU to ``cpu[kind]``."""
        with CaptureQueriesContext(connection) as captured:
            db_before, web_before = _backend_cpu_seconds(backend), time.process_time()
            started = time.perf_counter()
            answer = call()
            spent = (time.perf_counter() - started) * 1000
            cpu[kind]["web_s"] += time.process_time() - web_before
            cpu[kind]["db_s"] += _backend_cpu_seconds(backend) - db_before
        queries[kind] = len(captured)
        return answer, spent

    for round_ in range(warmup + requests):
        timed = round_ >= warmup
        if round_ == warmup:
            cpu = {kind: {"web_s": 0.0, "db_s": 0.0} for kind in cpu}  # the warm-up rounds don't count
        answer, spent = timed_call("ranking_next", lambda: client.post(f"/api/ranking-tasks/next/?project={project.pk}"))
        assert answer.status_code == 200, answer.status_code
        task = answer.json()
        started = time.perf_counter()
        submitted = client.post(
            f"/api/ranking-tasks/{task['id']}/rankings/",
            {"order": [[response["id"]] for response in task["responses"]], "time_spent_ms": 15000},
            content_type="application/json",
        )
        submit_spent = (time.perf_counter() - started) * 1000
        assert submitted.status_code == 201, submitted.content
        if timed:
            figures["ranking_next"].append(spent)
            figures["ranking_submit"].append(submit_spent)

        answer, spent = timed_call("prompt_next", lambda: client.post(f"/api/dialogues/next-prompt/?project={project.pk}"))
        assert answer.status_code == 201, (answer.status_code, answer.content[:300])
        started = time.perf_counter()
        discarded = client.delete(f"/api/dialogues/{answer.json()['id']}/")
        discard_spent = (time.perf_counter() - started) * 1000
        assert discarded.status_code in (200, 204), (discarded.status_code, discarded.content[:300])
        if timed:
            figures["prompt_next"].append(spent)
            figures["prompt_discard"].append(discard_spent)
    cpu_per_call = {
        kind: {
            "web_ms": round(spent["web_s"] * 1000 / requests, 2),
            "db_ms": round(spent["db_s"] * 1000 / requests, 2),
            "total_ms": round((spent["web_s"] + spent["db_s"]) * 1000 / requests, 2),
        }
        for kind, spent in cpu.items()
    }
    # what this machine charges for little: a request through the same stack that reads the project
    # (session, user, project, membership: as every call above does first), and one database round trip
    floor: dict[str, list[float]] = {"request_floor": [], "select_1": []}
    for _ in range(100):
        started = time.perf_counter()
        assert client.get(f"/api/projects/{project.pk}/").status_code == 200
        floor["request_floor"].append((time.perf_counter() - started) * 1000)
        with connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute("SELECT 1")
            floor["select_1"].append((time.perf_counter() - started) * 1000)
    return {name: _figures(values) for name, values in (figures | floor).items()} | {
        "queries": queries,
        "cpu_per_call": cpu_per_call,
    }


def time_baseline(*, project, labeler, runs: int) -> dict:
    """Time the candidate query `next` ran before issue 11 (pick of the first candidate), on the same tables."""
    from django.db.models import Case, Count, F, OuterRef, Subquery, Value, When
    from django.db.models.functions import Coalesce
    from django.utils import timezone

    from ranking.models import Lease, Ranking, RankingTask, Response, Skip, TaskPurpose, TaskStatus

    now = timezone.now()
    rankings = Ranking.objects.filter(task=OuterRef("pk")).values("task").annotate(n=Count("pk")).values("n")
    leases = Lease.objects.filter(task=OuterRef("pk"), expires_at__gt=now).values("task").annotate(n=Count("pk")).values("n")
    tasks = (
        RankingTask.objects.filter(project=project, status=TaskStatus.OPEN, is_gold=False)
        .exclude(pk__in=Ranking.objects.filter(labeler=labeler).values("task"))
        .exclude(pk__in=Skip.objects.filter(labeler=labeler).values("task"))
        .exclude(pk__in=Lease.objects.filter(labeler=labeler).values("task"))
        .exclude(pk__in=Response.objects.filter(created_by=labeler).values("task"))
        .annotate(taken_rankings=Coalesce(Subquery(rankings), Value(0)), taken_leases=Coalesce(Subquery(leases), Value(0)))
        .filter(taken_rankings__lt=project.rankings_per_task - F("taken_leases"))
        .order_by(Case(When(purpose=TaskPurpose.EVALUATION, then=Value(0)), default=Value(1)), "-taken_rankings", "pk")
    )
    spent = []
    for _ in range(runs):
        started = time.perf_counter()
        tasks.values_list("pk", flat=True).first()
        spent.append((time.perf_counter() - started) * 1000)
    return _figures(spent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--requests", type=int, default=300, help="timed `next` calls per size and kind")
    parser.add_argument("--baseline", action="store_true", help="also time the pre-issue-11 candidate query")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database afterwards")
    parser.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    parser.add_argument("--vacuum", action="store_true", help="VACUUM ANALYZE after the build, not only ANALYZE")
    parser.add_argument("--database", default=DB_NAME, help="the scratch database's name (dropped and made again)")
    args = parser.parse_args()
    _setup_django(args.database)
    results = {}
    try:
        for size in args.sizes:
            print(f"size {size:,}", flush=True)
            project, labeler = build(size=size, slug=f"bench-{size}", vacuum=args.vacuum)
            load_before = _load_average()
            result = time_next(project=project, labeler=labeler, requests=args.requests)
            result["load_average"] = {"before": load_before, "after": _load_average()}
            if args.baseline:
                result["baseline_candidate_query"] = time_baseline(
                    project=project, labeler=labeler, runs=10 if size <= 100_000 else 3
                )
            results[size] = result
            print(json.dumps(result, indent=1), flush=True)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", args.database], check=True)
    small, large = min(results), max(results)
    summary = {}
    for kind in ("ranking_next", "prompt_next"):
        summary[kind] = {
            f"{small:,} median_ms": results[small][kind]["median_ms"],
            f"{large:,} median_ms": results[large][kind]["median_ms"],
            f"{large:,} p95_ms": results[large][kind]["p95_ms"],
            "ratio_of_medians": round(results[large][kind]["median_ms"] / results[small][kind]["median_ms"], 3),
            "queries": results[large]["queries"][kind],
            f"{large:,} cpu_per_call_ms": results[large]["cpu_per_call"][kind],
        }
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"results": results, "summary": summary}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
