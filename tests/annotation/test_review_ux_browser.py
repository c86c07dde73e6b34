"""Reviewing and being reviewed in a browser: the decision in reach on a long dialogue, the comment error
beside the field, the waiting count, and rejected work on the labeler's dashboard."""

import os
from pathlib import Path

import pytest

from annotation.models import Role
from annotation.services.dialogues import TurnData, dialogue_review, dialogue_submit
from tests.annotation.factories import DialogueFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = os.environ.get("RLHF_SCREENSHOT_DIR")
LONG_DIALOGUE = [TurnData(role="user" if i % 2 == 0 else "assistant", content=f"Turn {i}. " + "A long line. " * 80)
                 for i in range(16)]


def _submitted(project, author, turns=None):
    dialogue = DialogueFactory(project=project, author=author, **({"turns": turns} if turns else {}))
    dialogue_submit(dialogue=dialogue, author=author)
    return dialogue


@pytest.mark.parametrize("width", [1280, 390])
def test_a_reviewer_decides_a_long_dialogue_without_scrolling_and_sees_the_comment_error_by_the_field(
    live_server, browser, login, project, make_member, width
):
    author, reviewer = make_member(project), make_member(project, Role.REVIEWER)
    long_one = _submitted(project, author, LONG_DIALOGUE)
    _submitted(project, author)
    context = browser.new_context(viewport={"width": width, "height": 844})
    page = context.new_page()
    login(page, reviewer.username)

    # the count shows in the menu and on the project page
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    assert page.locator("#action-review").inner_text() == "Review demonstrations 2 waiting"
    if width == 1280:
        assert page.locator(".nav-review .badge").inner_text() == "2"

    page.goto(f"{live_server.url}/dialogues/{long_one.pk}/")
    assert page.evaluate("document.documentElement.scrollHeight") > 3000  # a long dialogue
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    reject = page.get_by_role("button", name="Reject")
    box = reject.bounding_box()
    assert 0 <= box["y"] and box["y"] + box["height"] <= 844  # on screen at once, no scrolling
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / f"{width}-review-long-dialogue.png"))

    reject.click()  # no comment
    error = page.locator("#review-error")
    assert "Say why you reject it" in error.inner_text()
    field = page.locator("#review-comment").bounding_box()
    assert 0 < error.bounding_box()["y"] - field["y"] < 150  # right under the field, not at the top
    assert page.evaluate("document.activeElement.id") == "review-comment"

    page.fill("#review-comment", "Turn 3 contradicts turn 1.")
    page.get_by_role("button", name="Reject").click()
    page.wait_for_url("**/dialogues/*/")
    assert "rejected" in page.locator(".messages").inner_text()
    context.close()


def test_the_servers_comment_error_shows_beside_the_field(live_server, page, login, project, make_member):
    author, reviewer = make_member(project), make_member(project, Role.REVIEWER)
    dialogue = _submitted(project, author)
    login(page, reviewer.username)
    page.goto(f"{live_server.url}/dialogues/{dialogue.pk}/")
    page.evaluate("document.getElementById('review-form').noValidate = true")
    page.evaluate("""() => { const form = document.getElementById('review-form');
        const input = document.createElement('input'); input.type = 'hidden'; input.name = 'decision';
        input.value = 'reject'; form.append(input); HTMLFormElement.prototype.submit.call(form); }""")
    page.wait_for_load_state("load")
    assert page.locator("#review-error").inner_text() != ""
    assert page.locator(".messages li.error").count() == 0


def test_a_labelers_dashboard_lists_rejected_work_with_the_comment_and_a_link_to_revise(
    live_server, page, login, project, make_member
):
    author, reviewer = make_member(project), make_member(project, Role.REVIEWER)
    dialogue = _submitted(project, author)
    dialogue_review(dialogue=dialogue, reviewer=reviewer, decision="reject", comment="The answer is **wrong**.")
    login(page, author.username)
    page.goto(f"{live_server.url}/")
    card = page.locator("#rejected-work")
    assert "Sent back to you 1" in card.locator("h2").inner_text()
    assert f"{reviewer.username}: The answer is **wrong**." in card.inner_text()
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / "1280-dashboard-rejected.png"))
    card.get_by_role("link", name=f"Revise dialogue {dialogue.pk}").click()
    page.wait_for_url(f"**/dialogues/{dialogue.pk}/edit/")
    assert "The answer is" in page.locator("#rejection").inner_text()
    assert page.js_errors == []
