"""Vacuum the prompt table often, index entries included (PostgreSQL): `next-prompt` walks prompt_next_idx.

Each demonstration counted updates ``demonstrations_count``, an indexed column, so the prompt's old index
entry is left dead exactly where the walk starts (the oldest prompts, below their target). Until a vacuum
removes them the walk reads every one: at a million prompts with a tenth done, 500 index pages per call
(bench/RESULTS.md). Autovacuum's default waits for 20 % of the table to be dead (200,000 rows at a
million), and may skip the indexes when the dead rows sit on few pages; here it runs every 1 % (plus
1,000 rows) and always cleans the indexes.
"""

from django.db import migrations

TABLE = "annotation_prompt"


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
    dependencies = [("annotation", "0008_import_jobs")]

    operations = [migrations.RunPython(vacuum_often, vacuum_as_default, elidable=False)]
