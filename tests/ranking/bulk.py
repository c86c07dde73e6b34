"""Large ranking tables in seconds, with SQL ``generate_series``, for the scale and query-plan tests."""

from django.db import connection


def tasks_bulk_insert(project, *, count: int, answers: int) -> None:
    """Insert ``count`` open ranking tasks ("Question n") of ``answers`` answers each into ``project``.

    The rows are what a fresh import leaves: no rankings, counters at 0. Called again, it adds more
    (answers only for the new tasks).
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM ranking_rankingtask")
        last_id = cursor.fetchone()[0]
        cursor.execute(
            """
            INSERT INTO ranking_rankingtask (project_id, context, status, source, purpose, is_gold, import_hash,
                                             created_at)
            SELECT %s, jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'Question ' || n)),
                   'open', 'api', 'ranking', false, '', now()
            FROM generate_series(1, %s) AS n
            """,
            [project.pk, count],
        )
        cursor.execute(
            """
            INSERT INTO ranking_response (task_id, content, generator, position)
            SELECT t.id, 'Answer ' || p, 'model', p FROM ranking_rankingtask t CROSS JOIN generate_series(0, %s) AS p
            WHERE t.project_id = %s AND t.id > %s
            """,
            [answers - 1, project.pk, last_id],
        )
