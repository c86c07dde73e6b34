"""Give the demo project a few ranking tasks (idempotent): `manage.py ranking_seed_demo`."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotation.models import Project
from ranking.models import RankingTask, TaskSource
from ranking.services.tasks import ResponseSpec, ranking_task_create

DEMO_TASKS = [
    (
        "How do I reverse a list in Python?",
        [
            "Use slicing: `items[::-1]` returns a reversed copy; `items.reverse()` reverses in place.",
            "Call `reversed(items)`, which gives an iterator; wrap it in `list()` if you need a list.",
            "Python lists can't be reversed; copy the elements into a new list by hand.",
            "Use `items.sort(reverse=True)`.",
        ],
        None,
    ),
    (
        "Write a haiku about autumn.",
        [
            "Crisp leaves drift and fall\nthe maple lets go of red\nwind carries the year",
            "Autumn is a season that comes after summer and before winter.",
            "Leaves fall\nIt is cold\nThe end",
            "Golden light fading\nsquirrels bury their treasure\nfrost waits for the dawn",
        ],
        None,
    ),
    (
        "What is the boiling point of water at sea level?",
        [
            "100 °C (212 °F) at standard atmospheric pressure.",
            "About 90 °C.",
            "It depends on the pot.",
            "212 °C.",
        ],
        [[0], [2], [1, 3]],  # a gold task: the known ranking, in answer positions
    ),
]


class Command(BaseCommand):
    help = "Add demo ranking tasks (one gold) to the 'demo' project. Safe to run again."

    @transaction.atomic
    def handle(self, *args, **options):
        project = Project.objects.filter(slug="demo").first()
        if project is None:
            raise CommandError("No 'demo' project: run `manage.py seed_demo` first.")
        if RankingTask.objects.filter(project=project, context__0__content=DEMO_TASKS[0][0]).exists():
            self.stdout.write("Demo ranking tasks already exist.")
            return
        for question, answers, gold in DEMO_TASKS:
            ranking_task_create(
                project=project,
                context=[{"role": "user", "content": question}],
                responses=[ResponseSpec(answer, "demo-policy") for answer in answers],
                is_gold=gold is not None,
                gold_positions=gold,
                source=TaskSource.ADMIN,
            )
        self.stdout.write(self.style.SUCCESS(f"Added {len(DEMO_TASKS)} ranking tasks to {project.name}."))
