"""Ranking imports (API and page) refuse a line holding a lone UTF-16 surrogate ("\\ud800"), naming the line."""

import pytest

from annotation.models import Role
from ranking.models import RankingTask
from tests.config.test_lone_surrogates import LONE, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(project, make_member):
    return make_member(project, Role.MANAGER)


RANKING_LINES = {
    "ranking-jsonl": (
        '{"context": [{"role": "user", "content": "q"}], "responses": ["a", "b"]}\n'
        f'{{"context": [{{"role": "user", "content": "q {LONE}"}}], "responses": ["a", "b"]}}\n'
    ),
    "hh-rlhf": (
        '{"chosen": "\\n\\nHuman: Hi\\n\\nAssistant: Hello", "rejected": "\\n\\nHuman: Hi\\n\\nAssistant: No"}\n'
        f'{{"chosen": "\\n\\nHuman: Hi\\n\\nAssistant: Bad {LONE}", "rejected": "\\n\\nHuman: Hi\\n\\nAssistant: No"}}\n'
    ),
}


@pytest.mark.parametrize("fmt", sorted(RANKING_LINES))
def test_ranking_imports_refuse_a_lone_surrogate_naming_the_line(api_client_for, project, manager, fmt):
    response = api_client_for(manager).post(
        "/api/ranking-tasks/import/", {"project": project.pk, "format": fmt, "file": upload(RANKING_LINES[fmt])},
        format="multipart",
    )
    assert response.status_code == 400
    assert "line 2" in str(response.json()) and "surrogate" in str(response.json())
    assert not RankingTask.objects.exists()


@pytest.mark.parametrize("fmt", sorted(RANKING_LINES))
def test_the_ranking_import_page_refuses_a_lone_surrogate(client, project, manager, fmt):
    client.force_login(manager)
    response = client.post(f"/projects/{project.pk}/ranking/import/", {"format": fmt, "file": upload(RANKING_LINES[fmt])})
    assert response.status_code == 400
    assert "line 2" in response.content.decode() and "surrogate" in response.content.decode()
    assert not RankingTask.objects.exists()
