"""The spread of each labeler's per-task agreement, for the quality page's low-agreement test.

Filled from the contributions already counted (CountedRanking keeps each ranking's tau-b), one UPDATE.
"""

from django.db import migrations, models

FILL = """
UPDATE ranking_labelerstats AS stats SET agreement_sq_sum = counted.squares
FROM (
    SELECT task.project_id, ranking.labeler_id, SUM(c.agreement * c.agreement) AS squares
    FROM ranking_countedranking c
    JOIN ranking_ranking ranking ON ranking.id = c.ranking_id
    JOIN ranking_rankingtask task ON task.id = ranking.task_id
    WHERE c.agreement IS NOT NULL AND ranking.labeler_id IS NOT NULL
    GROUP BY task.project_id, ranking.labeler_id
) AS counted
WHERE stats.project_id = counted.project_id AND stats.labeler_id = counted.labeler_id
"""


class Migration(migrations.Migration):
    dependencies = [("ranking", "0008_imported_rankings_figure")]

    operations = [
        migrations.AddField(
            model_name="labelerstats",
            name="agreement_sq_sum",
            field=models.FloatField(default=0.0, help_text="Sum of the squares of those tau-b values."),
        ),
        migrations.RunSQL(FILL, reverse_sql=migrations.RunSQL.noop),
    ]
