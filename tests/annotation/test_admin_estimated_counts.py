"""Admin lists of big tables say when their row count is PostgreSQL's estimate ("≈ N ranking tasks")."""

import re

import pytest
from django.db import connection

from config import counting
from tests.ranking.factories import RankingTaskFactory

pytestmark = pytest.mark.django_db


def _paginator_text(client) -> str:
    html = client.get("/admin/ranking/rankingtask/").content.decode()
    return re.sub(r"\s+", " ", re.search(r'<p class="paginator">(.*?)</p>', html, re.S).group(1)).strip()


def test_admin_count_is_marked_as_an_estimate_only_when_it_is_one(client, project, django_user_model, monkeypatch):
    RankingTaskFactory.create_batch(6, project=project, answers=2)
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "x"))
    assert _paginator_text(client) == "6 ranking tasks"
    monkeypatch.setattr(counting, "EXACT_COUNT_LIMIT", 3)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ranking_rankingtask")
    assert re.fullmatch(r'<span title="An estimate[^"]*">≈ \d+</span> ranking tasks', _paginator_text(client))
