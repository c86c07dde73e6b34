"""Pages and lists read what they show, not the project: every query's plan checked on big tables.

One project gets ~120,000 ranking tasks (and their answers, prompts, dialogues) through SQL
``generate_series`` in a few seconds; each page below is requested once and every SELECT it ran is
run again under ``EXPLAIN ANALYZE``. No scan of a big table may read more than a bound far below
the table's size: a sequential scan over it, an index walk over all the project's tasks or a
``COUNT(*)`` over them would read ~120,000 rows and fails here, naming the page and the query.
(A sequential scan that a LIMIT stops after a page's worth of rows, as in the bounded count of
config.counting, reads no more than an index would and passes.)
(Timings at a million tasks are in bench/pages_scale.py, not here.)
"""

import json

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation.models import Role
from config import counting
from config.pagination import cursor_encode
from ranking.services.stats import ranking_project_stats_rebuild
from tests.ranking.bulk import tasks_bulk_insert

pytestmark = pytest.mark.django_db

TASKS = 120_000
BIG_TABLES = {"ranking_rankingtask", "ranking_response", "annotation_prompt", "annotation_dialogue", "annotation_turn"}
EXACT_LIMIT = 2_000  # counts above this are estimated (config.counting), so a page reads at most about this many
ROWS_READ_BOUND = 5_000


def _build(project, *, labeler, other) -> None:
    """Fill ``project`` with SQL: tasks (K=2), answers, 300 ranked tasks, prompts, dialogues and turns."""
    tasks_bulk_insert(project, count=TASKS, answers=2)
    with connection.cursor() as cursor:
        for labeler_id, every in ((labeler.pk, 400), (other.pk, 800)):
            cursor.execute(
                """
                INSERT INTO ranking_ranking (task_id, labeler_id, is_imported, "order", flags, scores, all_bad,
                                             time_spent_ms, idempotency_key, created_at)
                SELECT t.id, %s, false,
                       (SELECT jsonb_agg(jsonb_build_array(r.id) ORDER BY r.position)
                        FROM ranking_response r WHERE r.task_id = t.id),
                       '{}', '{}', false, 5000, '', now()
                FROM ranking_rankingtask t WHERE t.project_id = %s AND t.id %% %s = 0
                """,
                [labeler_id, project.pk, every],
            )
        cursor.execute(
            """
            UPDATE ranking_rankingtask SET status = 'complete', agreement = 1.0, consensus_at = now(),
                   consensus_order = '[]'
            WHERE project_id = %s AND id %% 800 = 0
            """,
            [project.pk],
        )
        cursor.execute(
            """
            INSERT INTO annotation_prompt (project_id, text, text_hash, source, is_active, held_out, created_at)
            SELECT %s, 'Prompt ' || n, md5('p' || n), 'written', true, false, now() FROM generate_series(1, 40000) n
            """,
            [project.pk],
        )
        cursor.execute(
            """
            INSERT INTO annotation_dialogue (project_id, author_id, prompt_id, status, version, round, source,
                                             import_hash, created_at, updated_at, submitted_at)
            SELECT project_id, %s, id, 'submitted', 1, 1, 'written', '', now(), now(), now()
            FROM annotation_prompt WHERE project_id = %s AND id %% 4 = 0
            """,
            [other.pk, project.pk],
        )
        cursor.execute(
            """
            INSERT INTO annotation_turn (dialogue_id, position, role, content)
            SELECT d.id, p, CASE WHEN p = 0 THEN 'user' ELSE 'assistant' END, 'Turn ' || p
            FROM annotation_dialogue d CROSS JOIN generate_series(0, 1) AS p WHERE d.project_id = %s
            """,
            [project.pk],
        )
        for table in BIG_TABLES | {"ranking_ranking"}:
            cursor.execute(f"ANALYZE {table}")
    ranking_project_stats_rebuild(project=project)


def _scans(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _scans(child)


def _too_big_scans(sql: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    found = []
    for node in _scans(plan[0]["Plan"]):
        if node.get("Relation Name") not in BIG_TABLES:
            continue
        read = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * node.get("Actual Loops", 1)
        if read > ROWS_READ_BOUND:
            found.append(f"{node['Node Type']} on {node['Relation Name']} read {read:.0f} rows")
    return found


PAGES = [
    ("labeler", "/projects/{pid}/"),
    ("manager", "/projects/{pid}/"),
    ("labeler", "/projects/{pid}/rank/"),
    ("labeler", "/projects/{pid}/ranking/stats/"),
    ("manager", "/projects/{pid}/ranking/quality/"),
    ("manager", "/projects/{pid}/ranking/import/"),
    ("labeler", "/api/projects/{pid}/ranking-stats/me/"),
    ("manager", "/api/projects/{pid}/ranking-quality/"),
    ("manager", "/api/ranking-tasks/?project={pid}"),
    ("manager", "/api/ranking-tasks/?project={pid}&status=complete"),
    ("manager", "/api/ranking-tasks/?project={pid}&offset=3000"),
    ("manager", "/api/prompts/?project={pid}"),
    ("other", "/api/dialogues/?project={pid}"),
    ("superuser", "/admin/ranking/rankingtask/"),
    ("superuser", "/admin/ranking/rankingtask/?status__exact=complete"),
    ("superuser", "/admin/ranking/rankingtask/?project__id__exact={pid}"),
    ("manager", "/admin/ranking/rankingtask/"),
    ("superuser", "/admin/ranking/ranking/"),
    ("superuser", "/admin/ranking/lease/"),
    ("superuser", "/admin/ranking/skip/"),
    ("superuser", "/admin/annotation/prompt/"),
    ("superuser", "/admin/annotation/dialogue/"),
    ("superuser", "/admin/annotation/review/"),
]


def _deep_cursor(sql: str, params: list) -> str:
    """The cursor of the page after the row that ``sql`` (ORDER BY … OFFSET … LIMIT 1) finds: set-up only."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor_encode(list(cursor.fetchone()))


def _deep_pages(project, users) -> list[tuple[str, str, int]]:
    """(role, url, first id expected) of API list pages that start ~100,000 / ~30,000 / ~9,000 rows in."""
    task_sql = "SELECT id FROM ranking_rankingtask WHERE project_id = %s ORDER BY id OFFSET 100000 LIMIT 1"
    prompt_sql = "SELECT id FROM annotation_prompt WHERE project_id = %s ORDER BY id OFFSET 30000 LIMIT 1"
    dialogue_sql = ("SELECT updated_at, id FROM annotation_dialogue WHERE author_id = %s "
                    "ORDER BY updated_at DESC, id DESC OFFSET 9000 LIMIT 1")
    pages = []
    for role, path, sql, params in [
        ("manager", "/api/ranking-tasks/?project={pid}&cursor={cursor}", task_sql, [project.pk]),
        ("manager", "/api/prompts/?project={pid}&cursor={cursor}", prompt_sql, [project.pk]),
        ("other", "/api/dialogues/?project={pid}&cursor={cursor}", dialogue_sql, [users["other"].pk]),
    ]:
        with connection.cursor() as cursor:
            cursor.execute(sql.replace("LIMIT 1", "LIMIT 2"), params)
            after = cursor.fetchall()[1][-1]  # the first row of the deep page
        pages.append((role, path.format(pid=project.pk, cursor=_deep_cursor(sql, params)), after))
    return pages


def test_no_page_reads_a_big_table_through(client, project, make_member, django_user_model, monkeypatch):
    monkeypatch.setattr(counting, "EXACT_COUNT_LIMIT", EXACT_LIMIT)
    project.rankings_per_task = 2
    project.save()
    users = {
        "labeler": make_member(project, Role.LABELER),
        "other": make_member(project, Role.LABELER),
        "manager": make_member(project, Role.MANAGER),
        "superuser": django_user_model.objects.create_superuser("root", "root@example.com", "x"),
    }
    users["manager"].is_staff = True
    users["manager"].save()
    users["manager"].user_permissions.add(*Permission.objects.filter(content_type__app_label="ranking"))
    _build(project, labeler=users["labeler"], other=users["other"])
    failures = []
    for role, path in PAGES:
        url = path.format(pid=project.pk)
        client.force_login(users[role])
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, (role, url, response.status_code)
        for query in queries.captured_queries:
            sql = query["sql"]
            if sql.lstrip().upper().startswith("SELECT"):
                failures += [f"{role} {url}: {scan}\n    {sql[:400]}" for scan in _too_big_scans(sql)]
    assert not failures, "\n".join(failures)

    # deep pages of the API lists: the next link's cursor starts the walk at its row (keyset), so a page
    # 100,000 rows in reads what the first page reads; OFFSET would read every row before it
    for role, url, first_id in _deep_pages(project, users):
        client.force_login(users[role])
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, (role, url, response.status_code)
        body = response.json()
        assert body["results"][0]["id"] == first_id and body["next"] and body["previous"], url
        for query in queries.captured_queries:
            sql = query["sql"]
            if sql.lstrip().upper().startswith("SELECT"):
                failures += [f"{role} {url}: {scan}\n    {sql[:400]}" for scan in _too_big_scans(sql)]
    assert not failures, "\n".join(failures)
    client.force_login(users["manager"])
    deep_offset = client.get(f"/api/ranking-tasks/?project={project.pk}&offset=100000")
    assert deep_offset.status_code == 400 and "next" in deep_offset.json()["detail"]


def _prompts_bulk_insert(project, *, count: int, start: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO annotation_prompt (project_id, text, text_hash, source, is_active, held_out, created_at)
            SELECT %s, 'Prompt ' || n, md5(%s || '-' || n), 'written', true, false, now()
            FROM generate_series(%s, %s) n
            """,
            [project.pk, str(project.pk), start, start + count - 1],
        )


def test_a_deep_page_walks_its_own_projects_rows_not_the_others_between(client, project, make_member, monkeypatch):
    # two projects whose rows interleave in id order, as sampling jobs and imports of several projects
    # leave them: a page of the first that starts before the second's block must not read that block
    from tests.factories import ProjectFactory

    monkeypatch.setattr(counting, "EXACT_COUNT_LIMIT", EXACT_LIMIT)
    other_project = ProjectFactory()
    manager = make_member(project, Role.MANAGER)
    tasks_bulk_insert(project, count=5_000, answers=2)
    _prompts_bulk_insert(project, count=5_000, start=1)
    tasks_bulk_insert(other_project, count=100_000, answers=2)
    _prompts_bulk_insert(other_project, count=100_000, start=1)
    tasks_bulk_insert(project, count=200, answers=2)
    _prompts_bulk_insert(project, count=200, start=5_001)
    with connection.cursor() as cursor:
        for table in BIG_TABLES:
            cursor.execute(f"ANALYZE {table}")
    client.force_login(manager)
    failures = []
    for table, path in (("ranking_rankingtask", "/api/ranking-tasks/"), ("annotation_prompt", "/api/prompts/")):
        # the page after the first block's 4,990th row: its last 10 rows, then 40 from the block after
        sql = f"SELECT id FROM {table} WHERE project_id = %s ORDER BY id OFFSET 4989 LIMIT 1"
        with connection.cursor() as cursor:
            cursor.execute(sql.replace("LIMIT 1", "LIMIT 51"), [project.pk])
            expected = [row[0] for row in cursor.fetchall()[1:]]
        url = f"{path}?project={project.pk}&limit=50&cursor={_deep_cursor(sql, [project.pk])}"
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        assert [row["id"] for row in response.json()["results"]] == expected, url
        for query in queries.captured_queries:
            if query["sql"].lstrip().upper().startswith("SELECT"):
                failures += [f"{url}: {scan}\n    {query['sql'][:400]}" for scan in _too_big_scans(query["sql"])]
    assert not failures, "\n".join(failures)
