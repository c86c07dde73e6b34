"""The import's duplicate lookup probes the unique index once per hash, whatever the statistics say.

Inside an import's transaction the tasks it has written are in no statistics; the lookup it had
before (``project_id = %s AND import_hash = ANY(%s)``) then read every task of the project for each
batch of 2,000 lines (a bitmap scan of the project's index, every row filtered out): quadratic in
the file, 0.2 s a batch at 400,000 tasks. The table here is built and queried without ANALYZE, as
an import finds it.
"""

from django.db import connection

from ranking.models import RankingTask
from ranking.services.imports import _HASHES_EXISTING_SQL
from tests.factories import ProjectFactory

TASKS = 30_000


def _plan(sql: str, params: list) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT TEXT) " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_duplicate_lookup_probes_the_unique_index_for_each_hash(db):
    project = ProjectFactory()
    with connection.cursor() as cursor:  # what an import leaves: tasks with their content hash, no ANALYZE since
        cursor.execute(
            """
            INSERT INTO ranking_rankingtask (project_id, context, status, source, purpose, is_gold, import_hash,
                                             created_at)
            SELECT %s, '[]', 'open', 'ranking-jsonl', 'ranking', false, md5(n::text) || md5((-n)::text), now()
            FROM generate_series(1, %s) AS n
            """,
            [project.pk, TASKS],
        )
        cursor.execute("SELECT md5(n::text) || md5((-n)::text) FROM generate_series(1, 2000, 2) AS n")
        known = [row[0] for row in cursor.fetchall()]
    hashes = known + [f"{n:064x}" for n in range(1000)]  # half in the project, half new
    sql = _HASHES_EXISTING_SQL.format(table=connection.ops.quote_name(RankingTask._meta.db_table))

    with connection.cursor() as cursor:
        cursor.execute(sql, [hashes, project.pk])
        assert sorted(row[0] for row in cursor.fetchall()) == sorted(known)
    plan = _plan(sql, [hashes, project.pk])
    assert "one_imported_ranking_task_per_content" in plan, plan
    assert "Bitmap" not in plan and "Seq Scan" not in plan, plan
    assert f"Rows Removed by Filter: {TASKS}" not in plan, plan
