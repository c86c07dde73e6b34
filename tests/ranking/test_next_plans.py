"""`next` walks an index at scale: its queries, as they run, never scan the project's tasks or prompts.

Builds a large project with SQL ``generate_series`` (seconds, in the test's transaction), captures the
exact SQL that leasing the next ranking task and the next prompt execute, and asks PostgreSQL for
each statement's plan. A later change that brings back a count over every open task (issue 11: 3.7 s
per `next` at a million tasks) fails here instead of in production.
"""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation.services.dialogues import prompt_lease_next
from ranking.services.leasing import leases_reclaim_expired, ranking_task_lease_next
from tests.ranking.bulk import tasks_bulk_insert
from training.selectors.loop import loop_status

pytestmark = pytest.mark.django_db

TASKS = 200_000
PROMPTS = 200_000


def _build(project, *, ranked_by) -> None:
    tasks_bulk_insert(project, count=TASKS, answers=2)
    with connection.cursor() as cursor:
        # one ranking by someone else on every 200th task, and its counter
        cursor.execute(
            """
            WITH ranked AS (
                INSERT INTO ranking_ranking (task_id, labeler_id, is_imported, "order", flags, scores, all_bad,
                                             time_spent_ms, idempotency_key, created_at)
                SELECT id, %s, false, '[]', '{}', '{}', false, 0, '', now() FROM ranking_rankingtask
                WHERE project_id = %s AND id %% 200 = 0
                RETURNING task_id
            )
            UPDATE ranking_rankingtask SET rankings_count = 1 WHERE id IN (SELECT task_id FROM ranked)
            """,
            [ranked_by.pk, project.pk],
        )
        cursor.execute(
            """
            INSERT INTO annotation_prompt (project_id, text, text_hash, source, is_active, held_out, created_at)
            SELECT %s, 'prompt ' || g, md5('plans-' || g), 'imported', true, false, now()
            FROM generate_series(1, %s) g
            """,
            [project.pk, PROMPTS],
        )
        # the first half of the queue already has its demonstration: `next-prompt` must not read it
        cursor.execute(
            """
            WITH done AS (
                INSERT INTO annotation_dialogue (project_id, author_id, prompt_id, status, version, round, source,
                                                 import_hash, created_at, updated_at, submitted_at)
                SELECT project_id, %s, id, 'submitted', 2, 1, 'written', '', now(), now(), now()
                FROM annotation_prompt WHERE project_id = %s ORDER BY id LIMIT %s
                RETURNING prompt_id
            )
            UPDATE annotation_prompt SET demonstrations_count = 1 WHERE id IN (SELECT prompt_id FROM done)
            """,
            [ranked_by.pk, project.pk, PROMPTS // 2],
        )
        cursor.execute(
            "ANALYZE ranking_rankingtask, ranking_response, ranking_ranking, annotation_prompt, annotation_dialogue"
        )


def _plans(captured, *, analyze: bool = False) -> list[tuple[str, str]]:
    """(sql, plan as JSON text) of every SELECT among the captured queries; ``analyze`` runs them for row counts."""
    plans = []
    with connection.cursor() as cursor:
        for query in captured:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute(f"EXPLAIN ({'ANALYZE, ' if analyze else ''}FORMAT JSON) " + sql)
            plans.append((sql, json.dumps(cursor.fetchone()[0])))
    return plans


def _rows_read(plan: str, table: str) -> int:
    """Rows the scans of ``table`` produced, filtered ones included (EXPLAIN ANALYZE)."""
    return sum(
        node.get("Actual Rows", 0) * node.get("Actual Loops", 1) + node.get("Rows Removed by Filter", 0)
        for node in _nodes(plan)
        if node.get("Relation Name") == table
    )


def _nodes(plan: str) -> list[dict]:
    found = []

    def walk(node):
        found.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk(json.loads(plan)[0]["Plan"])
    return found


def _seq_scans(plan: str, table: str) -> bool:
    return any(node["Node Type"] == "Seq Scan" and node.get("Relation Name") == table for node in _nodes(plan))


def _walks_in_order(plan: str) -> bool:
    """A LIMIT over an index scan, nothing sorted: the database stops after the first rows that qualify."""
    nodes = _nodes(plan)
    return nodes[0]["Node Type"] in ("Limit", "LockRows") and not any(node["Node Type"] == "Sort" for node in nodes)


def _is_pick(sql: str) -> bool:
    """The statement that walks the open tasks in ranking_task_next_idx's order (ranking.services.leasing)."""
    return "ORDER BY t.purpose, t.rankings_count DESC, t.id" in sql


def _is_prompt_walk(sql: str) -> bool:
    """The statement that walks the queue in prompt_next_idx's order (annotation.services.dialogues)."""
    return "ORDER BY p.demonstrations_count DESC, p.id" in sql


def test_next_and_what_runs_beside_it_walk_indexes_at_scale(project, make_member):
    other, labeler = make_member(project), make_member(project)
    _build(project, ranked_by=other)
    with CaptureQueriesContext(connection) as ranking_next:
        lease = ranking_task_lease_next(project=project, labeler=labeler)
    assert lease is not None and lease.task.rankings_count == 1  # nearest to completion first

    plans = _plans(ranking_next)
    picks = [plan for sql, plan in plans if _is_pick(sql)]
    assert picks and "ranking_task_next_idx" in picks[0] and _walks_in_order(picks[0]), picks
    for sql, plan in plans:
        assert not _seq_scans(plan, "ranking_rankingtask"), (sql, plan)

    with CaptureQueriesContext(connection) as prompt_next:
        result = prompt_lease_next(project=project, user=labeler)
    assert result is not None and result.created
    assert result.dialogue.prompt.demonstrations_count == 0  # past the half of the queue that is done
    plans = _plans(prompt_next)
    walks = [plan for sql, plan in plans if _is_prompt_walk(sql)]
    assert walks and "prompt_next_idx" in walks[0] and _walks_in_order(walks[0]), walks
    for sql, plan in plans:
        assert not _seq_scans(plan, "annotation_prompt"), (sql, plan)
    # run for real: each walk reads a few rows, not the 100,000 done prompts nor the 200,000 tasks
    walk_sql = [query for query in prompt_next if _is_prompt_walk(query["sql"])]
    pick_sql = [query for query in ranking_next if _is_pick(query["sql"])]
    [(_, prompt_walk)] = _plans(walk_sql[:1], analyze=True)
    [(_, task_walk)] = _plans(pick_sql[:1], analyze=True)
    assert _rows_read(prompt_walk, "annotation_prompt") < 1_000, prompt_walk
    assert _rows_read(task_walk, "ranking_rankingtask") < 1_000, task_walk

    # expired leases are reclaimed (beat, and `next` for the task it takes), and the loop counts open tasks and new
    # rankings: none of it reads the whole task table either
    lease.expires_at = timezone.now() - timedelta(minutes=1)
    lease.save(update_fields=["expires_at"])
    with CaptureQueriesContext(connection) as reclaim:
        assert leases_reclaim_expired(project=project) == 1
    with CaptureQueriesContext(connection) as loop:
        loop_status(project=project)
    for sql, plan in _plans(reclaim) + _plans(loop):
        assert not _seq_scans(plan, "ranking_rankingtask"), (sql, plan)


def test_the_tables_next_walks_are_vacuumed_often_indexes_included():
    """Dead index entries (a task's or prompt's count changed) sit where the walks start until a vacuum
    cleans the index: at 100,000 of them next-prompt read 500 index pages a call (bench/RESULTS.md)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN ('annotation_prompt', 'ranking_rankingtask')"
        )
        options = dict(cursor.fetchall())
    for table in ("annotation_prompt", "ranking_rankingtask"):
        assert "vacuum_index_cleanup=on" in options[table], options
        assert "autovacuum_vacuum_scale_factor=0.01" in options[table], options
