"""Counters of rankings and live leases on each ranking task, filled from the rows, and the indexes `next` walks."""

from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery
from django.utils import timezone


def counters_fill(apps, schema_editor):
    """Two UPDATEs, each touching only the tasks that have rankings (or live leases): no loop over rows."""
    RankingTask = apps.get_model("ranking", "RankingTask")
    Ranking = apps.get_model("ranking", "Ranking")
    Lease = apps.get_model("ranking", "Lease")
    rankings = Ranking.objects.filter(task=OuterRef("pk")).order_by().values("task").annotate(n=Count("pk")).values("n")
    RankingTask.objects.filter(pk__in=Ranking.objects.values("task_id")).update(rankings_count=Subquery(rankings))
    now = timezone.now()
    live = Lease.objects.filter(expires_at__gt=now)
    leases = live.filter(task=OuterRef("pk")).order_by().values("task").annotate(n=Count("pk")).values("n")
    RankingTask.objects.filter(pk__in=live.values("task_id")).update(leases_count=Subquery(leases))


class Migration(migrations.Migration):

    dependencies = [
        ("ranking", "0004_rankingtask_purpose"),
    ]

    operations = [
        migrations.AddField(
            model_name="rankingtask",
            name="leases_count",
            field=models.PositiveIntegerField(
                db_default=0,
                default=0,
                editable=False,
                help_text="Live leases when last counted (expired ones are reclaimed).",
            ),
        ),
        migrations.AddField(
            model_name="rankingtask",
            name="rankings_count",
            field=models.PositiveIntegerField(db_default=0, default=0, editable=False),
        ),
        migrations.RunPython(counters_fill, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="rankingtask",
            index=models.Index(
                condition=models.Q(("is_gold", False), ("status", "open")),
                fields=["project", "purpose", "-rankings_count", "id"],
                name="ranking_task_next_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="rankingtask",
            index=models.Index(
                condition=models.Q(("is_gold", True), ("status", "open")),
                fields=["project", "rankings_count", "id"],
                name="ranking_task_gold_next_idx",
            ),
        ),
    ]
