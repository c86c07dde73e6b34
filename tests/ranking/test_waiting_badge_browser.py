"""The project page's "N waiting" badge says when its figure is the planner's estimate (issue 11)."""

import re

import pytest
from django.db import connection

from annotation.models import Role
from config import counting
from ranking.selectors import ranking_tasks_waiting_count
from tests.ranking.factories import RankingTaskFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _badge(page, live_server, project) -> str:
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    return page.locator("#action-rank #rank-waiting").inner_text().strip()


def test_waiting_badge_is_exact_below_the_limit_and_marked_as_an_estimate_above(
    live_server, page, login, project, make_member, monkeypatch
):
    RankingTaskFactory.create_batch(6, project=project)
    labeler = make_member(project, Role.LABELER)
    login(page, labeler.username)
    assert _badge(page, live_server, project) == "6 waiting"
    assert page.locator("#rank-waiting").get_attribute("title") is None

    # past the exact-count limit the badge shows the planner's estimate, and says so
    monkeypatch.setattr(counting, "EXACT_COUNT_LIMIT", 3)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ranking_rankingtask")
    waiting = ranking_tasks_waiting_count(project=project, labeler=labeler)
    assert waiting.is_estimate
    text = _badge(page, live_server, project)
    assert re.fullmatch(r"≈ \d+ waiting", text), text
    assert text == f"≈ {waiting.count} waiting"
    assert page.locator("#rank-waiting").get_attribute("title").startswith(f"About {waiting.count}: an estimate")
