"""Headless Chromium: write a demonstration, survive a reload, submit, review, export; two tabs; XSS."""

import json

import pytest
from playwright.sync_api import expect
from rest_framework.test import APIClient

from annotation.models import Dialogue, DialogueStatus, Role
from annotation.services.dialogues import TurnData, dialogue_submit
from annotation.services.projects import guideline_publish
from tests.annotation.factories import DialogueFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
XSS_USER = '<img src=x onerror="window.__xss=1;alert(1)">'
XSS_ASSISTANT = "<script>window.__xss=2;alert(2)</script> is shown as text"


def test_labeler_writes_reloads_submits_reviewer_accepts_and_export_has_it(
    live_server, browser, page, login, project, make_member
):
    guideline_publish(project=project, body="Answer **precisely**.")
    labeler, reviewer = (
        make_member(project, username="writer"),
        make_member(project, Role.REVIEWER, "checker"),
    )
    manager = make_member(project, Role.MANAGER, "boss")

    login(page, "writer")
    page.goto(f"{live_server.url}/projects/{project.id}/")
    page.get_by_role("link", name="Write a demonstration").click()
    page.get_by_role("button", name="Start a blank conversation").click()
    page.wait_for_url("**/dialogues/*/edit/")
    assert "precisely" in page.locator("#guidelines").inner_text()  # guidelines beside the editor
    page.get_by_role("button", name="+ System turn").click()
    page.get_by_label("Turn 1 (system)").fill("You are a careful math tutor.")
    page.get_by_label("Turn 2 (user)").fill("What is 2 + 2?")
    expect(page.locator("#save-status")).to_have_text("Saved", timeout=15_000)  # not "Unsaved …"

    page.reload()  # mid-way: the assistant's answer isn't written yet
    assert page.get_by_label("Turn 1 (system)").input_value() == "You are a careful math tutor."
    assert page.get_by_label("Turn 2 (user)").input_value() == "What is 2 + 2?"
    answer = page.get_by_label("Turn 3 (assistant)")
    assert answer.input_value() == ""
    answer.fill("It is **4**.")
    assert page.locator(".dlg-turn").nth(2).locator(".dlg-counter").inner_text() == "12 / 8,000"
    page.get_by_label("Preview").check()
    page.locator(".dlg-turn").nth(2).locator(".dlg-preview strong", has_text="4").wait_for()
    answer.press("Control+Enter")
    page.wait_for_url("**/my-work/?status=submitted")
    dialogue = Dialogue.objects.get()
    assert dialogue.status == DialogueStatus.SUBMITTED
    assert page.locator(f"tr[data-dialogue='{dialogue.id}']").inner_text().count("Submitted") == 1
    assert page.js_errors == []

    context = browser.new_context()
    reviewer_page = context.new_page()
    login(reviewer_page, "checker")
    reviewer_page.goto(f"{live_server.url}/review/")
    reviewer_page.get_by_role("link", name="Review").last.click()
    assert "What is 2 + 2?" in reviewer_page.locator("#transcript").inner_text()
    reviewer_page.get_by_role("button", name="Accept").click()
    reviewer_page.wait_for_url("**/review/?project=*")
    context.close()
    dialogue.refresh_from_db()
    assert dialogue.status == DialogueStatus.ACCEPTED and reviewer.reviews.count() == 1

    api = APIClient()
    api.force_authenticate(manager)
    export = api.get(f"/api/projects/{project.id}/export/sft.jsonl")
    rows = [json.loads(line) for line in b"".join(export.streaming_content).decode().splitlines()]
    assert rows == [
        {
            "messages": [
                {"role": "system", "content": "You are a careful math tutor."},
                {"role": "user", "content": "What is 2 + 2?"},
                {"role": "assistant", "content": "It is **4**."},
            ]
        }
    ]
    assert labeler.dialogues.count() == 1


def test_two_tabs_editing_the_same_draft_never_overwrite_each_other(
    live_server, page, login, project, make_member
):
    author = make_member(project, username="twotabs")
    draft = DialogueFactory(
        project=project, author=author, turns=[TurnData("user", "start"), TurnData("assistant", "")]
    )
    login(page, "twotabs")
    url = f"{live_server.url}/dialogues/{draft.id}/edit/"
    page.goto(url)
    other_tab = page.context.new_page()
    other_tab.goto(url)

    page.get_by_label("Turn 2 (assistant)").fill("written in tab A")
    expect(page.locator("#save-status")).to_have_text("Saved", timeout=15_000)  # not "Unsaved …"
    other_tab.get_by_label("Turn 2 (assistant)").fill("written in tab B")
    expect(other_tab.locator("#save-status")).to_contain_text("Conflict:", timeout=15_000)
    assert other_tab.get_by_role("button", name="Reload").is_visible()
    assert [t.content for t in Dialogue.objects.get().turns.all()] == ["start", "written in tab A"]
    other_tab.get_by_role("button", name="Reload").click()
    other_tab.wait_for_load_state()
    assert other_tab.get_by_label("Turn 2 (assistant)").input_value() == "written in tab A"


def test_html_in_turns_shows_as_text_and_runs_nothing(
    live_server, browser, page, login, project, make_member
):
    author = make_member(project, username="sneaky")
    make_member(project, Role.REVIEWER, "careful")
    dialogue = DialogueFactory(
        project=project,
        author=author,
        turns=[TurnData("user", XSS_USER), TurnData("assistant", XSS_ASSISTANT)],
    )
    dialogue_submit(dialogue=dialogue, author=author)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    login(page, "careful")
    page.goto(f"{live_server.url}/dialogues/{dialogue.id}/")
    transcript = page.locator("#transcript").inner_text()
    assert XSS_USER in transcript and "<script>window.__xss=2;alert(2)</script>" in transcript
    assert page.locator("#transcript img").count() == 0 and page.locator("#transcript script").count() == 0
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None and dialogs == []

    # the author revising it in the editor, with the Markdown preview on, is just as safe
    author_context = browser.new_context()
    author_page = author_context.new_page()
    author_page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    Dialogue.objects.filter(pk=dialogue.pk).update(status=DialogueStatus.DRAFT)
    login(author_page, "sneaky")
    author_page.goto(f"{live_server.url}/dialogues/{dialogue.id}/edit/")
    assert author_page.get_by_label("Turn 1 (user)").input_value() == XSS_USER
    author_page.get_by_label("Preview").check()
    author_page.locator(".dlg-preview", has_text="onerror").first.wait_for()
    assert author_page.locator(".dlg-preview img, .dlg-preview script").count() == 0
    assert author_page.evaluate("window.__xss") is None and dialogs == []
    author_context.close()
