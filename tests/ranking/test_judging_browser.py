"""An evaluation task in headless Chromium: the answers side by side (stacked on a phone), pick one or call a tie."""

import os
from pathlib import Path

import pytest

from ranking.models import Ranking
from tests.training.evaluations import answer_of, evaluation_answered
from tests.training.factories import ModelVersionFactory
from training.models import ModelKind

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("RLHF_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _boxes(page) -> list[dict]:
    return [card.bounding_box() for card in page.locator("article.judge-answer").all()]


def test_a_labeler_picks_the_better_of_two_answers_side_by_side_then_calls_a_tie_on_a_phone(
    live_server, page, login, project, make_member, tmp_path
):
    project.rankings_per_task = 1
    project.save()
    new = ModelVersionFactory(project=project, kind=ModelKind.POLICY, name="ppo-v2")
    old = ModelVersionFactory(project=project, kind=ModelKind.SFT, name="sft-v1")
    evaluation = evaluation_answered(project, [new, old], prompts=2)
    first, second = evaluation.tasks.order_by("pk")
    labeler = make_member(project)
    login(page, labeler.username)

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/projects/{project.pk}/rank/")
    assert page.locator("h1").inner_text().startswith("Which answer is better?")
    assert "ppo-v2" not in page.content() and "sft-v1" not in page.content()  # unnamed
    left, right = _boxes(page)
    assert left["y"] == right["y"] and left["x"] + left["width"] <= right["x"]  # side by side
    assert page.locator("#submit-judgement").is_disabled()
    page.screenshot(path=str(_screenshot_dir(tmp_path) / "judge-1280.png"), full_page=True)

    # pick answer 2 with the mouse; Submit sends [[it], [the other]]
    picked = int(page.locator("article.judge-answer").nth(1).get_attribute("data-response-id"))
    page.get_by_role("button", name="Answer 2 is better").click()
    assert page.locator("#judge-status").inner_text() == "Answer 2 is better."
    assert page.locator(f"#answer-{picked}").get_attribute("class").endswith("picked")
    with page.expect_navigation():
        page.click("#submit-judgement")
    other = ({answer_of(first, new), answer_of(first, old)} - {picked}).pop()
    assert Ranking.objects.get(task=first, labeler=labeler).order == [[picked], [other]]

    # the next evaluation task on a phone: the answers stack, nothing scrolls sideways; 0 then Enter is a tie
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    top, bottom = _boxes(page)
    assert top["x"] == bottom["x"] and top["y"] + top["height"] <= bottom["y"]
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.keyboard.press("0")
    assert page.locator("#judge-tie").get_attribute("aria-pressed") == "true"
    page.screenshot(path=str(_screenshot_dir(tmp_path) / "judge-390.png"), full_page=True)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert Ranking.objects.get(task=second, labeler=labeler).order == [
        sorted([answer_of(second, new), answer_of(second, old)])
    ]
    assert page.js_errors == []
