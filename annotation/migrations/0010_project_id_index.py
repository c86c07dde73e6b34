"""A project's prompts indexed in id order, in place of the project foreign key's own index.

(project, id) serves the foreign key and lets a keyset page of one project's prompts walk from its
cursor, however many other projects' prompts lie between. Built before the old index goes.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0009_prompt_autovacuum"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="prompt",
            index=models.Index(fields=["project", "id"], name="prompt_project_id_idx"),
        ),
        migrations.AlterField(
            model_name="prompt",
            name="project",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="prompts", to="annotation.project"),
        ),
    ]
