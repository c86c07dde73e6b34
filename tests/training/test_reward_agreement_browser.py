"""The Training page's "Reward model vs fresh human rankings" chart in headless Chromium, wide and at phone width.

Screenshots go to $RLHF_SCREENSHOT_DIR when it is set (to look at them), else to the test's tmp folder.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from annotation.models import Role
from tests.training.reward_checks import check, make_current, ranked_task, reward_model

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DAY0 = datetime(2026, 11, 10, 9, 0, tzinfo=timezone.get_current_timezone())
FOUR = [[0], [1], [2], [3]]
# a second labeler's ranking of four answers, and how many of the first one's 6 pairs it keeps
SECOND_LABELER = [([[0], [1], [2], [3]], 6), ([[1], [0], [2], [3]], 5), ([[0], [2], [1], [3]], 5),
                  ([[1], [0], [3], [2]], 4)]


def _screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("RLHF_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _ten_days_of_checks(project):
    """Two reward models over ten days: the first goes stale, the second replaces it; two tasks a day."""
    project.responses_per_task, project.rankings_per_task = 4, 2
    project.save(update_fields=["responses_per_task", "rankings_per_task"])
    old = reward_model(project, labels_until=DAY0 - timedelta(days=1), name="reward-v1")
    new = reward_model(project, labels_until=DAY0 + timedelta(days=5), name='reward-v2 <img src=x onerror="window.pwned=1">')
    for day in range(10):
        for slot in range(2):
            second, _kept = SECOND_LABELER[(day + slot) % len(SECOND_LABELER)]
            task = ranked_task(project, [FOUR, second], ranked_at=DAY0 + timedelta(days=day, hours=slot), answers=4)
            model = old if day < 6 else new
            agreed = (9 - day // 2) if model == old else (10 - slot)
            check(model, task, pairs=12, agreed=min(12, agreed), margin=0.8 - day * 0.05)
    make_current(new)
    return old, new


def test_the_chart_draws_each_reward_model_with_its_band_beside_the_labelers_ceiling(
    live_server, page, login, project, make_member, tmp_path
):
    _ten_days_of_checks(project)
    manager = make_member(project, Role.MANAGER)
    login(page, manager.username)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/projects/{project.pk}/training/")
    page.wait_for_selector("#reward-agreement-chart[data-series='2']")
    chart = page.evaluate(
        "() => { const c = window.Chart.getChart(document.getElementById('reward-agreement-chart'));"
        " return {labels: c.data.labels.length, sets: c.data.datasets.map((d) => [d.label, d.data.filter((v) => v !== null).length])}; }"
    )
    assert chart["labels"] == 10
    names = [name for name, _ in chart["sets"]]
    assert names[2] == "reward-v1" and names[-1] == "Labelers with each other"
    assert dict(chart["sets"])["reward-v1"] == 6 and dict(chart["sets"])["Labelers with each other"] == 10
    # a model name is text, never markup
    figures = page.locator("#reward-agreement-figures")
    assert 'reward-v2 <img src=x onerror="window.pwned=1">' in figures.inner_text()
    assert page.evaluate("window.pwned") is None and figures.locator("img").count() == 0
    assert "current" in page.locator("#reward-agreement-figures li").nth(1).inner_text()
    page.locator("#reward-agreement").screenshot(path=str(_screenshot_dir(tmp_path) / "reward-agreement-1280.png"))

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/projects/{project.pk}/training/")
    page.wait_for_selector("#reward-agreement-chart[data-series='2']")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, overflow
    page.locator("#reward-agreement").screenshot(path=str(_screenshot_dir(tmp_path) / "reward-agreement-390.png"))
    assert page.js_errors == []


def test_before_any_check_the_card_says_what_it_waits_for(live_server, page, login, project, make_member):
    manager = make_member(project, Role.MANAGER)
    login(page, manager.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/training/")
    assert page.locator("#reward-agreement-empty").is_visible()
    assert page.locator("#reward-agreement-next").inner_text() == "Checks start once a reward model is current."
    make_current(reward_model(project, labels_until=timezone.now(), name="reward-v1"))
    page.reload()
    assert page.locator("#reward-agreement-next").inner_text() == (
        "0 completed tasks no reward model trained on wait for reward-v1; a check starts at 20.")
    assert page.js_errors == []
