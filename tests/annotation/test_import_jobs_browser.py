"""The prompt import job page in headless Chromium: a large file goes to the worker, the progress bar polls, the
report shows; at desktop width and on a 390 px phone, with nothing wider than the screen."""

import json
import os
from pathlib import Path

import pytest

from annotation.models import Prompt, Role
from tests.conftest import celery_worker_start, celery_worker_stop

pytestmark = [pytest.mark.browser, pytest.mark.celery, pytest.mark.django_db(transaction=True)]
SHOTS = os.environ.get("RLHF_SCREENSHOT_DIR")


def _shot(page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


@pytest.mark.parametrize("width", [1280, 390])
def test_a_large_prompt_file_shows_a_progress_bar_until_the_worker_has_imported_it(
    live_server, browser, login, settings, project, make_member, width
):
    settings.IMPORT_INLINE_MAX_BYTES = 100  # this small file counts as large: it goes to the worker
    manager = make_member(project, Role.MANAGER)
    lines = "".join(json.dumps({"prompt": f"Prompt number {n}: explain it plainly."}) + "\n" for n in range(300))
    context = browser.new_context(viewport={"width": width, "height": 844})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, manager.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/data/")
    page.set_input_files("input[name=file]", {"name": "a-rather-long-file-name-of-prompts-from-the-team.jsonl",
                                              "mimeType": "application/jsonl", "buffer": lines.encode()})
    page.click("#import button[type=submit]")
    page.wait_for_url(f"**/projects/{project.pk}/data/imports/*/")
    # no worker yet: the job waits in the queue, and the page says so with an empty bar
    assert page.locator("#import-job-status").inner_text().startswith("Queued")
    assert page.locator("#import-job-progress").get_attribute("max") == "300"
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    _shot(page, f"{width}-prompt-import-queued.png")

    worker = celery_worker_start(name=f"prompt-import-browser-{width}", queues="default")
    try:
        # the page polls the job's API and reloads itself with the report once the worker is done
        page.wait_for_selector("text=Imported 300 prompts from 300 rows", timeout=60_000)
    finally:
        celery_worker_stop(worker)
    assert page.locator("#import-job-progress").count() == 0
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    _shot(page, f"{width}-prompt-import-done.png")
    assert Prompt.objects.filter(project=project).count() == 300
    page.goto(f"{live_server.url}/projects/{project.pk}/data/")
    assert "a-rather-long-file-name" in page.locator("#import-jobs").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    _shot(page, f"{width}-prompt-import-list.png")
    assert not errors
    context.close()
