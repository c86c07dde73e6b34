"""The index the prompt queue's `next-prompt` walks: a project's active, not held-out prompts by id."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0004_api_tokens"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="prompt",
            index=models.Index(
                condition=models.Q(("held_out", False), ("is_active", True)),
                fields=["project", "id"],
                name="prompt_queue_idx",
            ),
        ),
    ]
