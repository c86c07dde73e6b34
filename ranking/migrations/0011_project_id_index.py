"""A project's tasks indexed in id order, in place of the foreign keys' single-column indexes.

(project, id) serves the project foreign key and lets a keyset page of one project's tasks walk from
its cursor, however many other projects' tasks lie between; an answer's task is served by the unique
(task, position) index, so its own index only cost every import a write. The new index is built
before the old ones go, so deleting a project never runs without one.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0010_project_id_index"),
        ("ranking", "0010_rankingtask_autovacuum"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="rankingtask",
            index=models.Index(fields=["project", "id"], name="ranking_task_project_id_idx"),
        ),
        migrations.AlterField(
            model_name="rankingtask",
            name="project",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="ranking_tasks", to="annotation.project"),
        ),
        migrations.AlterField(
            model_name="response",
            name="task",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="responses", to="ranking.rankingtask"),
        ),
    ]
