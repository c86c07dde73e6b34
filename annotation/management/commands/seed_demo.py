"""Create the demo project and users (idempotent): `manage.py seed_demo`."""

import os

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand
from django.db import transaction

from annotation.models import Project, Prompt, Role
from annotation.services.dialogues import prompt_create, prompt_text_hash
from annotation.services.projects import guideline_publish, membership_set, project_create

DEFAULT_DEMO_PASSWORD = "rlhf-demo-pass"

DEMO_MEMBERS = {
    "manager": Role.MANAGER,
    "reviewer": Role.REVIEWER,
    "labeler1": Role.LABELER,
    "labeler2": Role.LABELER,
    "labeler3": Role.LABELER,
    "engineer": Role.LABELER,
}

DEMO_GUIDELINES = """\
Write the conversation you would want a helpful, honest and harmless assistant to have.

## Demonstrations
- Play both sides: write the **user's** message, then the ideal **assistant** answer.
- Answers are correct, specific and no longer than needed. Say so when you don't know.
- Refuse harmful requests briefly and offer a safe alternative.

## Ranking
- Rank answers from best to worst; put answers in a tie only when you truly can't choose.
- Flag answers that fail the instruction, make things up, or are harmful or inappropriate.

Markdown works here: `code`, *emphasis*, lists and [links](https://example.org).
"""

DEMO_PROMPTS = [
    "Explain what a hash table is to someone who has just started programming.",
    "Write a short, polite email declining a meeting invitation.",
    "What are three ways to make a slow SQL query faster?",
    "My houseplant's leaves are turning yellow. What could be wrong?",
    "Summarise the plot of Romeo and Juliet in three sentences.",
]


class Command(BaseCommand):
    help = "Create the 'Demo assistant' project and the demo users. Safe to run again."

    @transaction.atomic
    def handle(self, *args, **options):
        password = os.environ.get("DEMO_PASSWORD") or DEFAULT_DEMO_PASSWORD
        User = get_user_model()

        project = Project.objects.filter(slug="demo").first() or project_create(
            name="Demo assistant",
            slug="demo",
            description="A demo project: write demonstrations, rank answers, train a tiny model.",
        )
        if project.current_guideline is None:
            guideline_publish(project=project, body=DEMO_GUIDELINES, title="Demo guidelines")

        admin, _ = User.objects.get_or_create(username="admin", defaults={"email": "admin@example.org"})
        admin.is_staff = admin.is_superuser = True
        admin.set_password(password)
        admin.save()

        engineers, _ = Group.objects.get_or_create(name="ML engineers")
        engineers.permissions.add(Permission.objects.get(codename="use_training_api", content_type__app_label="annotation"))

        for username, role in DEMO_MEMBERS.items():
            user, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.org"})
            user.set_password(password)
            user.is_staff = username == "manager"  # the manager runs the project in Django admin
            user.save()
            membership_set(project=project, user=user, role=role)
            if username == "engineer":
                user.groups.add(engineers)
        if User.objects.filter(username="manager", is_staff=True).exists():
            # staff without permissions sees an empty admin; give the manager the project models
            manager = User.objects.get(username="manager")
            manager.user_permissions.add(
                *Permission.objects.filter(content_type__app_label__in=["annotation", "ranking", "training"]),
                Permission.objects.get(codename="view_user", content_type__app_label="auth"),
            )

        manager = User.objects.get(username="manager")
        for text in DEMO_PROMPTS:
            if not Prompt.objects.filter(project=project, text_hash=prompt_text_hash(text)).exists():
                prompt_create(project=project, text=text, created_by=manager)

        self.stdout.write(self.style.SUCCESS(
            f"Demo ready: project '{project.name}' (slug demo); users admin, "
            f"{', '.join(DEMO_MEMBERS)}; password from DEMO_PASSWORD "
            f"({'set' if os.environ.get('DEMO_PASSWORD') else 'default ' + DEFAULT_DEMO_PASSWORD})."
        ))
