"""Recount the quality figures of every project (or one) from its rankings: `manage.py ranking_stats_rebuild`.

The services keep the figures up to date as rankings arrive; run this once after upgrading to the
release that added them, and after writing rankings around the services (SQL, a restored dump).
"""

from django.core.management.base import BaseCommand

from annotation.models import Project
from ranking.services.stats import ranking_project_stats_rebuild


class Command(BaseCommand):
    help = "Recount labelers' and projects' ranking figures (quality page, My stats) from the rankings."

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, help="Only this project id.")

    def handle(self, *args, project=None, **options):
        projects = Project.objects.order_by("pk")
        if project is not None:
            projects = projects.filter(pk=project)
        for each in projects:
            ranking_project_stats_rebuild(project=each)
            self.stdout.write(f"{each.pk} {each.name}: figures recounted")
