"""Ranking on a phone (390 px, touch): tap to place, buttons to move and tie, a touch drag, Submit in reach."""

import os
from pathlib import Path

import pytest

from ranking.models import Ranking
from tests.ranking.test_browser import _config, _groups, _task

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = os.environ.get("RLHF_SCREENSHOT_DIR")


@pytest.fixture
def phone(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # dragging moves chips through the DOM: nothing it does may need an inline style or script
    page.on("console", lambda message: "Content Security Policy" in message.text and errors.append(message.text))
    page.js_errors = errors
    yield page
    context.close()


def _labels(page) -> dict[str, int]:
    return {card.get_attribute("data-label"): int(card.get_attribute("data-response-id"))
            for card in page.locator("article.answer").all()}


def _touch_drag(page, source, target) -> None:
    """A finger rests on ``source``, then slides onto ``target`` and lifts (real touch events, via CDP)."""
    cdp = page.context.new_cdp_session(page)
    source.scroll_into_view_if_needed()
    target.scroll_into_view_if_needed()
    start, end = source.bounding_box(), target.bounding_box()
    x0, y0 = start["x"] + start["width"] / 2, start["y"] + start["height"] / 2
    x1, y1 = end["x"] + end["width"] / 2, end["y"] + end["height"] / 2
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0, "id": 1}]})
    page.wait_for_timeout(300)  # longer than the board's touch delay: a drag, not a scroll
    for step in range(1, 11):
        x, y = x0 + (x1 - x0) * step / 10, y0 + (y1 - y0) * step / 10
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y, "id": 1}]})
        page.wait_for_timeout(30)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    page.wait_for_timeout(100)


def test_a_phone_labeler_ranks_by_taps_and_a_touch_drag_and_submits_from_the_bottom_bar(
    live_server, phone, login, project, make_member
):
    project.rankings_per_task = 1
    project.save()
    _task(project, ["Alpha answer", "Bravo answer", "Charlie answer", "Delta answer"])
    login(phone, make_member(project).username)
    phone.goto(f"{live_server.url}/projects/{project.pk}/rank/")
    ids = _labels(phone)
    task_id = _config(phone)["taskId"]

    # the board sits between the question and the answers, not below every answer
    board, first_answer = phone.locator(".rank-board").bounding_box(), phone.locator("article.answer").first.bounding_box()
    assert board["y"] < first_answer["y"]
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390

    # tap "Rank next" on answers 3 and 1, then tap answer 4's chip in the pool: each goes to the bottom
    phone.locator(f"#answer-{ids['3']} [data-place]").tap()
    phone.locator(f"#answer-{ids['1']} [data-place]").tap()
    phone.locator(f'#rank-pool .chip[data-response-id="{ids["4"]}"]').tap()
    assert _groups(phone) == [["3"], ["1"], ["4"]]
    assert phone.locator(".rank-dock [data-progress]").inner_text() == "3 of 4 ranked"

    # Submit with one left: it says which; ranking the last one clears the message
    phone.locator("#submit-ranking-dock").tap()
    assert "Answer 2 still unranked" in phone.locator("#rank-status").inner_text()
    phone.locator(f"#answer-{ids['2']} [data-place]").tap()
    assert _groups(phone) == [["3"], ["1"], ["4"], ["2"]]
    assert phone.locator("#rank-status").inner_text() == ""

    # tap a ranked answer, then the buttons: up, tie with the one above, unrank and place again
    phone.locator(f'#rank-groups .chip[data-response-id="{ids["4"]}"]').tap()
    actions = phone.locator("#rank-actions")
    assert actions.is_visible() and actions.locator("[data-picked]").inner_text() == "Answer 4:"
    actions.get_by_role("button", name="↑ Up").tap()
    assert _groups(phone) == [["3"], ["4"], ["1"], ["2"]]
    actions.get_by_role("button", name="Tie with above").tap()
    assert _groups(phone) == [["3", "4"], ["1"], ["2"]]
    phone.locator(f'#rank-groups .chip[data-response-id="{ids["2"]}"]').tap()
    actions.get_by_role("button", name="Unrank").tap()
    assert _groups(phone) == [["3", "4"], ["1"]]
    phone.locator(f"#answer-{ids['2']} [data-place]").tap()

    # a touch drag: answer 2 from the bottom rank into the gap above the first
    _touch_drag(phone, phone.locator(f'#rank-groups .chip[data-response-id="{ids["2"]}"]'),
                phone.locator('#rank-groups li.rank-gap[data-position="0"]'))
    assert _groups(phone) == [["2"], ["3", "4"], ["1"]]
    if SHOTS:
        phone.screenshot(path=str(Path(SHOTS) / "390-rank-ranked.png"), full_page=True)

    # the bottom bar stays on screen while the answers scroll, and submits
    phone.locator("article.answer").last.scroll_into_view_if_needed()
    dock = phone.locator(".rank-dock").bounding_box()
    assert dock["y"] + dock["height"] <= 844 + 1
    with phone.expect_navigation():
        phone.locator("#submit-ranking-dock").tap()
    ranking = Ranking.objects.get(task_id=task_id)
    assert ranking.order == [[ids["2"]], sorted([ids["3"], ids["4"]]), [ids["1"]]]
    assert phone.js_errors == []
