"""Keyset pages of the big API lists: every row once, forwards and back, ties on the sort key, bad cursors."""

import pytest
from django.utils import timezone

from annotation.models import Dialogue, Role
from config import pagination
from tests.annotation.factories import DialogueFactory
from tests.ranking.factories import RankingTaskFactory

pytestmark = pytest.mark.django_db


def _walk(client, url: str, key: str = "next") -> list[list[int]]:
    pages = []
    while url:
        body = client.get(url).json()
        pages.append([row["id"] for row in body["results"]])
        url = body[key]
    return pages


def test_task_list_walks_every_task_once_forwards_and_back(api_client_for, project, make_member):
    tasks = [RankingTaskFactory(project=project, answers=2).pk for _ in range(7)]
    client = api_client_for(make_member(project, Role.MANAGER))
    first = client.get(f"/api/ranking-tasks/?project={project.pk}&limit=3").json()
    assert first["count"] == 7 and first["count_is_estimate"] is False and first["previous"] is None
    assert "cursor=" in first["next"] and "offset" not in first["next"]
    forwards = _walk(client, f"/api/ranking-tasks/?project={project.pk}&limit=3")
    assert forwards == [tasks[0:3], tasks[3:6], tasks[6:7]]
    last = client.get(f"/api/ranking-tasks/?project={project.pk}&limit=3&offset=6").json()
    assert [row["id"] for row in last["results"]] == tasks[6:] and last["next"] is None
    backwards = _walk(client, last["previous"], key="previous")
    assert backwards == [tasks[3:6], tasks[0:3]]


def test_dialogues_tied_on_their_sort_key_are_each_listed_once(api_client_for, project, make_member):
    author = make_member(project, Role.LABELER)
    dialogues = [DialogueFactory(project=project, author=author).pk for _ in range(5)]
    Dialogue.objects.filter(pk__in=dialogues).update(updated_at=timezone.now())  # one updated_at for all
    client = api_client_for(author)
    pages = _walk(client, f"/api/dialogues/?project={project.pk}&limit=2")
    assert pages == [sorted(dialogues, reverse=True)[i : i + 2] for i in (0, 2, 4)]


def test_a_forged_cursor_is_404_and_a_deep_offset_names_the_next_link(api_client_for, project, make_member, monkeypatch):
    RankingTaskFactory.create_batch(3, project=project)
    client = api_client_for(make_member(project, Role.MANAGER))
    for cursor in ("not-base64!", pagination.cursor_encode(["x", 1]), pagination.cursor_encode(["yesterday"])):
        assert client.get(f"/api/ranking-tasks/?project={project.pk}&cursor={cursor}").status_code == 404
    monkeypatch.setattr(pagination, "MAX_OFFSET", 2)
    assert client.get(f"/api/ranking-tasks/?project={project.pk}&offset=2").status_code == 200
    refused = client.get(f"/api/ranking-tasks/?project={project.pk}&offset=3")
    assert refused.status_code == 400 and "`next` link" in refused.json()["detail"]
