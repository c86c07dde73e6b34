"""The ranking quality page on a phone: the most disputed tasks read as one card per task, nothing scrolls sideways."""

import os
from pathlib import Path

import pytest

from annotation.models import Role
from ranking.services.rankings import ranking_submit
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = os.environ.get("RLHF_SCREENSHOT_DIR")  # set it to keep the pictures (desktop and 390 px)
LONG_TURN = "Which of these explanations of gradient clipping in PPO is the most accurate for a beginner?"


def _disputed_project(project, make_member):
    project.rankings_per_task = 2
    project.save()
    first, second = make_member(project, username="labeler-one"), make_member(project, username="labeler-two")
    for number in range(4):
        task = RankingTaskFactory(project=project, answers=4,
                                  context=[{"role": "user", "content": f"{LONG_TURN} ({number})"}])
        ids = response_ids(task)
        ranking_submit(task=task, labeler=first, order=[[i] for i in ids])
        ranking_submit(task=task, labeler=second, order=[[i] for i in (ids if number % 2 else ids[::-1])])


def _label(page, cell) -> str:
    """The label a phone shows before a cell (CSS ``::before``, which inner_text leaves out)."""
    return page.evaluate("el => getComputedStyle(el, '::before').content", cell.element_handle())


@pytest.mark.parametrize("width", [1280, 390])
def test_disputed_tasks_read_on_a_phone_and_as_a_table_on_a_desktop(
    live_server, browser, login, project, make_member, width
):
    _disputed_project(project, make_member)
    manager = make_member(project, Role.MANAGER)
    context = browser.new_context(viewport={"width": width, "height": 900}, is_mobile=width < 600,
                                  has_touch=width < 600)
    page = context.new_page()
    login(page, manager.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/ranking/quality/")
    table = page.locator("#disputed")
    rows = table.locator("tbody tr")
    assert rows.count() == 4
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / f"quality-{width}.png"), full_page=True)
    viewport = page.viewport_size["width"]
    box = table.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport
    # nothing inside the table scrolls sideways: every figure is on screen without a swipe
    assert page.evaluate("el => el.scrollWidth <= el.clientWidth + 1", table.element_handle())
    first = rows.nth(0)
    turn = first.locator("[data-cell=turn]")
    task, agreement = first.locator("[data-cell=task]"), first.locator("[data-cell=agreement]")
    if width < 600:
        # one card per task: the figures on a line, the user's turn below them, the card's full width
        assert page.locator("#disputed thead").is_hidden()
        assert turn.bounding_box()["y"] > task.bounding_box()["y"] + task.bounding_box()["height"] - 1
        assert turn.bounding_box()["width"] > 0.8 * box["width"]
        assert [_label(page, cell) for cell in (task, agreement)] == ['"Task "', '"τ-b "']
        assert abs(task.bounding_box()["y"] - agreement.bounding_box()["y"]) < 4
        # the labelers' table too: one card per labeler, nothing past the screen's edge
        labelers = page.locator("#labelers")
        assert page.evaluate("el => el.scrollWidth <= el.clientWidth + 1", labelers.element_handle())
        assert labelers.bounding_box()["x"] + labelers.bounding_box()["width"] <= viewport
    else:
        # a table: the turn in its own column, beside the figures
        assert page.locator("#disputed thead").is_visible()
        assert abs(turn.bounding_box()["y"] - task.bounding_box()["y"]) < 4
    assert LONG_TURN[:40] in turn.inner_text()
    context.close()
