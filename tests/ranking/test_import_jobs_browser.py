"""The import job page in headless Chromium: a large file goes to the worker, the progress bar polls, the report shows."""

import json

import pytest

from annotation.models import Role
from ranking.models import RankingTask
from tests.conftest import celery_worker_start, celery_worker_stop

pytestmark = [pytest.mark.browser, pytest.mark.celery, pytest.mark.django_db(transaction=True)]


def test_a_large_file_shows_a_progress_bar_until_the_worker_has_imported_it(
    live_server, page, login, settings, project, make_member
):
    settings.IMPORT_INLINE_MAX_BYTES = 100  # this small file counts as large: it goes to the worker
    manager = make_member(project, Role.MANAGER)
    lines = "".join(
        json.dumps({"context": [{"role": "user", "content": f"Question {n}?"}], "responses": [f"Yes {n}", f"No {n}"]})
        + "\n" for n in range(300)
    )
    login(page, manager.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/ranking/import/")
    page.set_input_files("input[name=file]", {"name": "tasks.jsonl", "mimeType": "application/jsonl",
                                              "buffer": lines.encode()})
    page.click("form[enctype='multipart/form-data'] button[type=submit]")
    page.wait_for_url(f"**/projects/{project.pk}/ranking/import/*/")
    # no worker yet: the job waits in the queue, and the page says so with an empty bar
    assert page.locator("#import-job-status").inner_text().startswith("Queued")
    assert page.locator("#import-job-progress").get_attribute("max") == "300"

    worker = celery_worker_start(name="import-browser", queues="default")
    try:
        # the page polls the job's API and reloads itself with the report once the worker is done
        page.wait_for_selector("text=Imported 300 ranking task(s)", timeout=60_000)
    finally:
        celery_worker_stop(worker)
    assert page.locator("#import-job-progress").count() == 0
    assert RankingTask.objects.filter(project=project).count() == 300
