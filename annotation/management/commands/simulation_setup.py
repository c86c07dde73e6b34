"""Create a project and a team for the labeler simulator: `manage.py simulation_setup`.

The simulator (``python -m simulator``) works only through the REST API, which has no endpoint to
create projects or users; this command makes them and prints, as one JSON object, what the
simulator logs in with: ``{"project", "password", "manager", "reviewer", "labelers", "careless"}``.
The manager manages the project, which is enough to drive its training API. Run it again with the
same slug to reuse the project and reset the passwords.
"""

import json
import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from annotation.models import Project, Role
from annotation.services.projects import membership_set, project_create


class Command(BaseCommand):
    help = "Create (or reuse) a project with a manager, a reviewer and labelers for the simulator; print them as JSON."

    def add_arguments(self, parser):
        parser.add_argument("--slug", default="simulated-loop")
        parser.add_argument("--name", default="Simulated loop")
        parser.add_argument("--labelers", type=int, default=4, help="careful labelers")
        parser.add_argument("--careless", type=int, default=1, help="careless labelers (random orders, too fast)")
        parser.add_argument("--responses-per-task", type=int, default=4, help="K answers per ranking task")
        parser.add_argument("--rankings-per-task", type=int, default=2)
        parser.add_argument("--password", default=os.environ.get("SIMULATION_PASSWORD") or "",
                            help="every account's password (default: SIMULATION_PASSWORD, else a random one)")

    @transaction.atomic
    def handle(self, *args, **options):
        password = options["password"] or secrets.token_urlsafe(16)
        settings = {
            "responses_per_task": options["responses_per_task"], "rankings_per_task": options["rankings_per_task"],
            "demonstrations_per_prompt": 1, "accepts_required": 1, "gold_rate": 0.0,
        }
        slug = options["slug"]
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            project = project_create(name=options["name"], slug=slug, **settings)
        else:
            for key, value in settings.items():
                setattr(project, key, value)
            project.full_clean()
            project.save(update_fields=list(settings))
        team = {
            "manager": [(f"{slug}-manager", Role.MANAGER)],
            "reviewer": [(f"{slug}-reviewer", Role.REVIEWER)],
            "labelers": [(f"{slug}-labeler{i + 1}", Role.LABELER) for i in range(options["labelers"])],
            "careless": [(f"{slug}-careless{i + 1}", Role.LABELER) for i in range(options["careless"])],
        }
        User = get_user_model()
        for members in team.values():
            for username, role in members:
                user, _ = User.objects.get_or_create(username=username)
                user.set_password(password)
                user.save()
                membership_set(project=project, user=user, role=role)
        self.stdout.write(json.dumps({
            "project": project.pk, "password": password,
            "manager": team["manager"][0][0], "reviewer": team["reviewer"][0][0],
            "labelers": [name for name, _ in team["labelers"]], "careless": [name for name, _ in team["careless"]],
        }))
