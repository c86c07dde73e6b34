"""Import a file into a project from the command line: `manage.py import_project_file PATH --project SLUG ...`.

Same rules as the API (all or nothing, duplicates reported); handy for large files and benchmarks.
"""

import json
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from annotation.models import DialogueStatus, Project
from annotation.services.imports import FORMATS, project_import
from config.exceptions import ApplicationError


class Command(BaseCommand):
    help = "Import prompts or demonstrations from a file into a project and print the report as JSON."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--format", required=True, choices=FORMATS)
        parser.add_argument("--user", required=True, help="Username recorded as the importer (and author).")
        parser.add_argument(
            "--skip-invalid", action="store_true", help="Skip bad lines instead of refusing the file."
        )
        parser.add_argument(
            "--status",
            default=DialogueStatus.ACCEPTED,
            choices=[DialogueStatus.ACCEPTED, DialogueStatus.SUBMITTED],
            help="Status of imported dialogues.",
        )

    def handle(
        self, *args, path: Path, project: str, format: str, user: str, skip_invalid: bool, status: str, **kw
    ):
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project with slug {project!r}.")
        importer = get_user_model().objects.filter(username=user).first()
        if importer is None:
            raise CommandError(f"No user {user!r}.")
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        started = time.perf_counter()
        with path.open("rb") as handle:
            try:
                report = project_import(
                    project=target,
                    user=importer,
                    file=File(handle, name=path.name),
                    format=format,
                    skip_invalid=skip_invalid,
                    dialogue_status=status,
                )
            except ApplicationError as exc:
                raise CommandError(exc.message) from exc
        result = {**report.as_dict(), "seconds": round(time.perf_counter() - started, 3)}
        self.stdout.write(json.dumps(result, indent=2))
