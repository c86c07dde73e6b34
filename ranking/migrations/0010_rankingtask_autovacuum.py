"""Vacuum the ranking task table often, index entries included (PostgreSQL): `next` walks ranking_task_next_idx.

Every lease and ranking rewrites its task's counts, and a ranking changes ``rankings_count``, an indexed
column: the task's old index entry is left dead where the walk starts (nearest to completion first).
Until a vacuum removes them the walk reads every one. Autovacuum's default waits for 20 % of the table
to be dead (200,000 rows at a million), and may skip the indexes when the dead rows sit on few pages;
here it runs every 1 % (plus 1,000 rows) and always cleans the indexes. As annotation's 0009 does for
prompts.
"""

from django.db import migrations

TABLE = "ranking_rankingtask"


def vacuum_often(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"ALTER TABLE {TABLE} SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,"
            " vacuum_index_cleanup = on)"
        )


def vacuum_as_default(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"ALTER TABLE {TABLE} RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,"
            " vacuum_index_cleanup)"
        )


class Migration(migrations.Migration):
    dependencies = [("ranking", "0009_labelerstats_agreement_sq_sum")]

    operations = [migrations.RunPython(vacuum_often, vacuum_as_default, elidable=False)]
