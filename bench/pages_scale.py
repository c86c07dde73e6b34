"""Pages and lists at a million ranking tasks: how long each takes a logged-in user (median of several requests).

Builds, in a scratch PostgreSQL database, one project of ``--tasks`` ranking tasks (K=4) with SQL
``generate_series``, and about a thousand rankings of 350 of them (3 per task, one task in ten open
with 2, 20 gold), consensus and figures computed by the services; leases, skips and a
demonstrations side (200k prompts, 50k submitted dialogues, their turns, reviews). Then it logs in
as the manager and as a labeler and requests every page, admin list and API list below
``--repeat`` times, printing a Markdown table: the median time, and the queries and their SQL time
in one request.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_rlhf_pages \\
        .venv/bin/python -m bench.pages_scale --tasks 1000000       # builds once, then measures
    .venv/bin/python -m bench.pages_scale --tasks 1000000 --rebuild # start from an empty database
    .venv/bin/python -m bench.pages_scale --drop                    # drop the scratch database

The requests go through Django's test client in this process (no network, no gunicorn), so the
figures are the server's own time for the request: views, templates and SQL.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_rlhf_pages"
PASSWORD = "bench-pages-password"
LABELERS = 20
RANKINGS_PER_TASK = 3


def _setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,localhost")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/5")
    import django

    django.setup()


def _admin_sql(database_url: str, sql: str, params=()) -> list:
    """Run one statement on the server's ``postgres`` database (CREATE / DROP DATABASE need autocommit)."""
    import psycopg2

    conn = psycopg2.connect(database_url.rsplit("/", 1)[0] + "/postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        conn.close()


def database_create(database_url: str, *, rebuild: bool) -> None:
    """Create the scratch database unless it exists (``rebuild``: drop it first)."""
    name = database_url.rsplit("/", 1)[1]
    exists = _admin_sql(database_url, "SELECT 1 FROM pg_database WHERE datname = %s", [name])
    if exists and rebuild:
        _admin_sql(database_url, f'DROP DATABASE "{name}" WITH (FORCE)')
        exists = []
    if not exists:
        _admin_sql(database_url, f'CREATE DATABASE "{name}"')


def database_drop(database_url: str) -> None:
    name = database_url.rsplit("/", 1)[1]
    _admin_sql(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def build(*, tasks: int, ranked_tasks: int) -> None:
    """Fill the empty (migrated) database: users, one project, ``tasks`` tasks, rankings, demonstrations."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotation.models import Membership, Project, Role
    from ranking.models import Lease, Ranking, RankingTask, Response, Skip
    from ranking.services.tasks import ranking_task_gold_set, ranking_tasks_consensus_recompute

    started = time.perf_counter()
    User = get_user_model()
    manager = User.objects.create_superuser("manager", "manager@example.com", PASSWORD)
    labelers = []
    for number in range(LABELERS):
        labeler = User(username=f"labeler{number:02d}")
        labeler.set_password(PASSWORD)
        labelers.append(labeler)
    User.objects.bulk_create(labelers)
    labelers = list(User.objects.filter(username__startswith="labeler").order_by("username"))
    project = Project.objects.create(
        name="A million tasks", slug="a-million-tasks", responses_per_task=4, rankings_per_task=RANKINGS_PER_TASK
    )
    Membership.objects.create(project=project, user=manager, role=Role.MANAGER)
    Membership.objects.bulk_create([Membership(project=project, user=u, role=Role.LABELER) for u in labelers])
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO ranking_rankingtask (project_id, context, status, source, purpose, is_gold, import_hash,
                                             created_at)
            SELECT %s, jsonb_build_array(jsonb_build_object('role', 'user', 'content',
                       'Question ' || n || ': how would you explain item ' || (n::bigint * 7919 %% 100003) || '?')),
                   'open', 'ranking-jsonl', 'ranking', false, md5(n::text) || md5((n + 1)::text), now()
            FROM generate_series(1, %s) AS n
            """,
            [project.pk, tasks],
        )
        cursor.execute(
            """
            INSERT INTO ranking_response (task_id, content, generator, position)
            SELECT t.id, 'Answer ' || p || ' to task ' || t.id || ': ' || repeat('words ', 10 + p), 'model-' || p, p
            FROM ranking_rankingtask t CROSS JOIN generate_series(0, 3) AS p
            WHERE t.project_id = %s
            """,
            [project.pk],
        )
        # the demonstrations side: prompts, a dialogue for one prompt in four, two turns each, reviews
        cursor.execute(
            """
            INSERT INTO annotation_prompt (project_id, text, text_hash, source, is_active, held_out, created_at)
            SELECT %s, 'Write about topic ' || n, md5('prompt' || n), 'written', true, false, now()
            FROM generate_series(1, %s) AS n
            """,
            [project.pk, max(tasks // 5, 1)],
        )
        cursor.execute(
            """
            INSERT INTO annotation_dialogue (project_id, author_id, prompt_id, status, version, round, source,
                                             import_hash, created_at, updated_at, submitted_at)
            SELECT project_id, %s, id, 'submitted', 1, 1, 'written', '', now(), now(), now()
            FROM annotation_prompt WHERE project_id = %s AND id %% 4 = 0
            """,
            [labelers[0].pk, project.pk],
        )
        cursor.execute(
            """
            INSERT INTO annotation_turn (dialogue_id, position, role, content)
            SELECT d.id, p, CASE WHEN p = 0 THEN 'user' ELSE 'assistant' END, 'Turn ' || p || ' of ' || d.id
            FROM annotation_dialogue d CROSS JOIN generate_series(0, 1) AS p WHERE d.project_id = %s
            """,
            [project.pk],
        )
        cursor.execute(
            """
            INSERT INTO annotation_review (dialogue_id, reviewer_id, round, decision, comment, created_at)
            SELECT id, %s, 1, 'accept', '', now() FROM annotation_dialogue WHERE project_id = %s AND id %% 10 = 0
            """,
            [manager.pk, project.pk],
        )
    print(f"rows inserted in {time.perf_counter() - started:.0f} s", flush=True)

    # ~ranked_tasks tasks ranked, spread over the project: most complete (3 rankings), some open with 2
    rng = random.Random(11)
    first_id = RankingTask.objects.filter(project=project).order_by("pk").values_list("pk", flat=True).first()
    step = max(tasks // ranked_tasks, 1)
    ranked_ids = [first_id + i * step for i in range(ranked_tasks)]
    gold_ids = ranked_ids[:20]
    answers: dict[int, list[int]] = {}
    for task_id, response_id in Response.objects.filter(task_id__in=ranked_ids).values_list("task_id", "pk"):
        answers.setdefault(task_id, []).append(response_id)
    for task in RankingTask.objects.filter(pk__in=gold_ids).select_related("project"):
        ranking_task_gold_set(task=task, order=[[r] for r in sorted(answers[task.pk])])
    rankings = []
    for index, task_id in enumerate(ranked_ids):
        count = 2 if index % 10 == 9 else RANKINGS_PER_TASK  # one task in ten waits for its third ranking
        for labeler in rng.sample(labelers, count):
            ids = sorted(answers[task_id])
            if rng.random() < 0.3:
                rng.shuffle(ids)
            rankings.append(
                Ranking(task_id=task_id, labeler=labeler, order=[[i] for i in ids], time_spent_ms=rng.randint(3, 60) * 1000,
                        all_bad=rng.random() < 0.05, flags={str(ids[0]): ["hallucination"]} if rng.random() < 0.1 else {})
            )
    Ranking.objects.bulk_create(rankings, batch_size=1000)
    ranking_tasks_consensus_recompute(task_ids=ranked_ids)
    _rebuild_precomputed(project=project)
    open_ids = [task_id + 1 for task_id in ranked_ids]  # unranked neighbours
    from datetime import timedelta

    from django.utils import timezone

    Skip.objects.bulk_create([Skip(task_id=open_ids[i], labeler=labelers[i % LABELERS]) for i in range(200)])
    Lease.objects.bulk_create(
        [Lease(task_id=open_ids[200 + i], labeler=labelers[i], expires_at=timezone.now() + timedelta(hours=1))
         for i in range(1, LABELERS)]
    )  # labeler00 holds none: the bench's labeler05 gets one from `next` on its first view
    _rebuild_precomputed(project=project)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"built in {time.perf_counter() - started:.0f} s: {tasks} tasks, {len(rankings)} rankings", flush=True)


def _rebuild_precomputed(*, project) -> None:
    """Recount what the services keep up to date (the rows above were written around them)."""
    import importlib.util

    if importlib.util.find_spec("ranking.services.stats") is None:
        return  # measuring the code before the figures were kept
    from ranking.services import stats

    stats.ranking_project_stats_rebuild(project=project)


def _median_ms(client, url: str, *, repeat: int, method: str = "get") -> tuple[float, int, float, int]:
    """Return the median wall time of ``repeat`` requests, and the queries and their SQL time in one of them."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = getattr(client, method)(url)  # first request warms caches; its queries are counted
    queries = len(captured)  # now: the next request clears the connection's query log
    sql_ms = sum(float(query["time"]) for query in captured.captured_queries) * 1000
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = getattr(client, method)(url)
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), queries, sql_ms, response.status_code


def measure(*, repeat: int) -> list[tuple[str, float, int, float, int]]:
    from django.conf import settings
    from django.test import Client
    from django.test.utils import override_settings
    from django.urls import reverse

    # no collectstatic here: plain static storage instead of the production manifest
    storages = {**settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    with override_settings(STORAGES=storages):
        return _measure(repeat=repeat, Client=Client, reverse=reverse)


def _measure(*, repeat: int, Client, reverse) -> list[tuple[str, float, int, float, int]]:

    from annotation.models import Project
    from config.pagination import cursor_encode
    from ranking.models import RankingTask

    project = Project.objects.get(slug="a-million-tasks")
    task = RankingTask.objects.filter(project=project, rankings__isnull=False).order_by("pk").first()
    manager, labeler = Client(), Client()
    assert manager.login(username="manager", password=PASSWORD)
    assert labeler.login(username="labeler05", password=PASSWORD)
    pid = project.pk
    tasks = RankingTask.objects.filter(project=project).order_by("pk").values_list("pk", flat=True)
    # the next links' cursors of pages 1000 and 18,000 (50 a page): keyset pages, no OFFSET
    deep, deeper = (cursor_encode([tasks[n - 1]]) for n in (50_000, 900_000))
    pages = [
        ("project page (labeler)", labeler, reverse("project-detail", args=[pid])),
        ("project page (manager)", manager, reverse("project-detail", args=[pid])),
        ("rank page (labeler)", labeler, reverse("ranking-rank", args=[pid])),
        ("my ranking stats", labeler, reverse("ranking-my-stats", args=[pid])),
        ("ranking quality", manager, reverse("ranking-quality", args=[pid])),
        ("import page", manager, reverse("ranking-import", args=[pid])),
        ("dashboard", labeler, reverse("dashboard")),
        ("API ranking tasks", manager, reverse("api-ranking-tasks") + f"?project={pid}"),
        ("API ranking tasks, page 1000 (cursor)", manager, reverse("api-ranking-tasks") + f"?project={pid}&cursor={deep}"),
        ("API ranking tasks, page 18,000 (cursor)", manager,
         reverse("api-ranking-tasks") + f"?project={pid}&cursor={deeper}"),
        ("API ranking tasks ?status=complete", manager, reverse("api-ranking-tasks") + f"?project={pid}&status=complete"),
        ("API ranking task", manager, reverse("api-ranking-task-detail", args=[task.pk])),
        ("API my stats", labeler, reverse("api-ranking-stats-me", args=[pid])),
        ("API ranking quality", manager, reverse("api-ranking-quality", args=[pid])),
        ("API prompts", manager, reverse("api-prompt-list") + f"?project={pid}"),
        ("API dialogues", labeler, reverse("api-dialogue-list") + f"?project={pid}"),
        ("API review queue", manager, reverse("api-dialogue-review-queue") + f"?project={pid}"),
        ("API projects", labeler, reverse("api-project-list")),
    ]
    for model in ("ranking/rankingtask", "ranking/ranking", "ranking/lease", "ranking/skip",
                  "annotation/prompt", "annotation/dialogue", "annotation/review"):
        pages.append((f"admin {model.split('/')[1]} list", manager, f"/admin/{model}/"))
    pages.append(("admin rankingtask list, ?status=open", manager, "/admin/ranking/rankingtask/?status__exact=open"))
    pages.append(("admin rankingtask change", manager, f"/admin/ranking/rankingtask/{task.pk}/change/"))
    rows = []
    print(f"| {'page / list':<40} | median ms | queries | SQL ms | HTTP |\n|---|---:|---:|---:|---|", flush=True)
    for name, client, url in pages:
        median, queries, sql_ms, status = _median_ms(client, url, repeat=repeat)
        rows.append((name, median, queries, sql_ms, status))
        print(f"| {name:<40} | {median:8.1f} | {queries:3d} | {sql_ms:7.1f} | {status} |", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--ranked", type=int, default=350, help="tasks ranked (3 rankings each, 1 in 10 with 2)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rebuild", action="store_true", help="drop and rebuild the scratch database")
    parser.add_argument("--drop", action="store_true", help="drop the scratch database and stop")
    args = parser.parse_args(argv)
    database_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    if args.drop:
        database_drop(database_url)
        return 0
    database_create(database_url, rebuild=args.rebuild)
    _setup(database_url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)  # later migrations apply to a database built before them
    from annotation.models import Project

    if not Project.objects.filter(slug="a-million-tasks").exists():
        build(tasks=args.tasks, ranked_tasks=args.ranked)
    rows = measure(repeat=args.repeat)
    worst = max(rows, key=lambda row: row[1])
    print(f"\nslowest: {worst[0]} {worst[1]:.1f} ms (target 300 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
