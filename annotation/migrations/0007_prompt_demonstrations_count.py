"""Each prompt's submitted and accepted dialogues counted on its row, filled from the rows; the index `next-prompt` walks."""

from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery


def counts_fill(apps, schema_editor):
    """One UPDATE over the prompts that have such dialogues: no loop over rows."""
    Prompt = apps.get_model("annotation", "Prompt")
    Dialogue = apps.get_model("annotation", "Dialogue")
    done = Dialogue.objects.filter(status__in=["submitted", "accepted"], prompt__isnull=False)
    per_prompt = done.filter(prompt=OuterRef("pk")).order_by().values("prompt").annotate(n=Count("pk")).values("n")
    Prompt.objects.filter(pk__in=done.values("prompt_id")).update(demonstrations_count=Subquery(per_prompt))


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0006_dialogue_list_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="prompt",
            name="demonstrations_count",
            field=models.PositiveIntegerField(db_default=0, default=0, editable=False),
        ),
        migrations.RunPython(counts_fill, migrations.RunPython.noop),
        migrations.RemoveIndex(model_name="prompt", name="prompt_queue_idx"),
        migrations.AddIndex(
            model_name="prompt",
            index=models.Index(
                condition=models.Q(("held_out", False), ("is_active", True)),
                fields=["project", "-demonstrations_count", "id"],
                name="prompt_next_idx",
            ),
        ),
    ]
