"""The demonstration editor as a new labeler meets it: Back after submitting, long text, a paste past the limit."""

import os
from pathlib import Path

import pytest

from annotation.models import TURN_MAX_CHARS, Dialogue, DialogueStatus
from tests.annotation.factories import DialogueFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = os.environ.get("RLHF_SCREENSHOT_DIR")


def test_back_after_submitting_shows_the_dialogue_read_only_not_a_draft(live_server, page, login, project, make_member):
    labeler = make_member(project)
    dialogue = DialogueFactory(project=project, author=labeler)
    login(page, labeler.username)
    page.goto(f"{live_server.url}/dialogues/{dialogue.pk}/edit/")
    page.locator("#save-status", has_text="Saved").wait_for()
    page.click("#submit-dialogue")
    page.wait_for_url("**/my-work/?status=submitted")

    page.go_back()
    page.wait_for_url(f"**/dialogues/{dialogue.pk}/")
    assert page.locator("#dialogue-status").inner_text() == "Submitted"
    assert "can't be edited while it waits" in page.locator("#read-only-note").inner_text()
    assert page.locator("textarea").count() == 0 and page.locator("#submit-dialogue").count() == 0
    dialogue.refresh_from_db()
    assert dialogue.status == DialogueStatus.SUBMITTED
    assert page.js_errors == []


def test_the_editor_served_from_memory_leaves_for_the_read_only_page(live_server, page, login, project, make_member):
    """A copy of the editor left open (or restored by the browser) whose dialogue was submitted meanwhile."""
    labeler = make_member(project)
    dialogue = DialogueFactory(project=project, author=labeler)
    login(page, labeler.username)
    page.goto(f"{live_server.url}/dialogues/{dialogue.pk}/edit/")
    response = page.request.get(f"{live_server.url}/dialogues/{dialogue.pk}/edit/", max_redirects=0)
    assert "no-store" in response.headers["cache-control"]
    Dialogue.objects.filter(pk=dialogue.pk).update(status=DialogueStatus.SUBMITTED, version=dialogue.version + 1)
    page.get_by_label("Turn 2 (assistant)").fill("An edit made in the stale copy.")
    page.wait_for_url(f"**/dialogues/{dialogue.pk}/")  # not "changed in another tab"
    assert page.locator("#dialogue-status").inner_text() == "Submitted"


@pytest.mark.parametrize("width", [1280, 390])
def test_long_unbroken_text_wraps_in_the_preview_and_a_cut_paste_is_announced(
    live_server, browser, login, project, make_member, width
):
    labeler = make_member(project)
    dialogue = DialogueFactory(project=project, author=labeler)
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    login(page, labeler.username)
    page.goto(f"{live_server.url}/dialogues/{dialogue.pk}/edit/")

    page.get_by_label("Turn 1 (user)").fill("x" * 5000)
    page.get_by_label("Preview").check()
    page.locator(".dlg-turn").first.locator(".dlg-preview p").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= width

    answer = page.get_by_label("Turn 2 (assistant)")
    answer.fill("")
    page.evaluate("text => navigator.clipboard.writeText(text)", "y" * (TURN_MAX_CHARS + 1234))
    answer.focus()
    page.keyboard.press("Control+V")
    assert len(answer.input_value()) == TURN_MAX_CHARS
    notice = page.locator(".dlg-turn").nth(1).locator(".dlg-paste-cut")
    assert notice.is_visible() and "last 1,234 characters were left out" in notice.inner_text()
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / f"{width}-editor-long-text.png"), full_page=True)
    context.close()
