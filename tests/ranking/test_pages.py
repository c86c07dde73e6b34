"""Server-rendered ranking pages: rank, none left, my stats, quality, import, project actions."""

import io
import json

import pytest

from annotation.models import Role
from ranking.models import Lease, RankingTask
from ranking.services.rankings import ranking_submit
from ranking.services.tasks import ResponseSpec, ranking_task_create
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = pytest.mark.django_db


def _logged_in(client, user):
    client.force_login(user)
    return client


def test_rank_page_leases_and_shows_the_task_with_sanitised_markdown(client, project, make_member):
    task = ranking_task_create(
        project=project,
        context=[{"role": "user", "content": "Explain **bold** <script>alert('ctx')</script>"}],
        responses=[ResponseSpec("Fine `code` answer"), ResponseSpec("<img src=x onerror=alert(1)> evil")],
    )
    labeler = make_member(project)
    response = _logged_in(client, labeler).get(f"/projects/{project.pk}/rank/")
    html = response.content.decode()
    assert response.status_code == 200
    assert Lease.objects.filter(task=task, labeler=labeler).exists()
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "csrftoken" in response.cookies
    config = json.loads(html.split('<script id="ranking-config" type="application/json">')[1].split("</script>")[0])
    assert sorted(r["id"] for r in config["responses"]) == response_ids(task)
    assert [r["label"] for r in config["responses"]] == [1, 2]
    assert 'data-flag-for' in html and "Hallucination / makes things up" in html
    assert 'name="score-' in html


def _shown_task_id(response) -> int:
    html = response.content.decode()
    return json.loads(html.split('<script id="ranking-config" type="application/json">')[1].split("</script>")[0])[
        "taskId"
    ]


def test_reloading_the_rank_page_shows_the_held_task_and_never_takes_a_second_lease(client, project, make_member):
    project.rankings_per_task = 3
    project.save()
    RankingTaskFactory.create_batch(2, project=project)
    labeler = make_member(project)
    _logged_in(client, labeler)
    first = _shown_task_id(client.get(f"/projects/{project.pk}/rank/"))
    # a task nearer completion appears meanwhile: a fresh lease would go to it, a reload must not
    nearer = RankingTaskFactory(project=project)
    for other in (make_member(project), make_member(project)):
        ranking_submit(task=nearer, labeler=other, order=[[i] for i in response_ids(nearer)])
    for _ in range(3):
        assert _shown_task_id(client.get(f"/projects/{project.pk}/rank/")) == first
    assert list(Lease.objects.filter(labeler=labeler).values_list("task_id", flat=True)) == [first]


def test_rank_page_says_when_nothing_is_left(client, project, make_member):
    response = _logged_in(client, make_member(project)).get(f"/projects/{project.pk}/rank/")
    assert response.status_code == 200 and "Nothing left to rank for you" in response.content.decode()


def test_rank_page_of_a_foreign_project_is_404(client, project, make_member):
    from tests.factories import UserFactory

    assert _logged_in(client, UserFactory()).get(f"/projects/{project.pk}/rank/").status_code == 404


def test_pages_need_login(client, project):
    response = client.get(f"/projects/{project.pk}/rank/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_my_stats_page(client, project, make_member):
    labeler = make_member(project)
    task = RankingTaskFactory(project=project, answers=2)
    ranking_submit(task=task, labeler=labeler, order=[[i] for i in response_ids(task)], time_spent_ms=4200)
    html = _logged_in(client, labeler).get(f"/projects/{project.pk}/ranking/stats/").content.decode()
    assert '<dd data-figure="ranked">1</dd>' in html and '<dd data-figure="median_time">4.2 s</dd>' in html


def test_quality_page_is_for_managers(client, project, make_member):
    labeler = make_member(project, username="lab-one")
    task = RankingTaskFactory(project=project, answers=2)
    ranking_submit(task=task, labeler=labeler, order=[[i] for i in response_ids(task)])
    assert _logged_in(client, labeler).get(f"/projects/{project.pk}/ranking/quality/").status_code == 404
    html = _logged_in(client, make_member(project, Role.MANAGER)).get(f"/projects/{project.pk}/ranking/quality/")
    assert html.status_code == 200 and 'data-labeler="lab-one"' in html.content.decode()


def test_import_page_imports_and_reports_line_errors(client, project, make_member):
    manager = make_member(project, Role.MANAGER)
    _logged_in(client, manager)
    good = io.BytesIO(b'{"context": [{"role": "user", "content": "q"}], "responses": ["a", "b"]}\n')
    good.name = "t.jsonl"
    response = client.post(f"/projects/{project.pk}/ranking/import/", {"format": "ranking-jsonl", "file": good})
    assert response.status_code == 302 and RankingTask.objects.count() == 1
    bad = io.BytesIO(b'{"context": [], "responses": ["a", "b"]}\n')
    bad.name = "t.jsonl"
    response = client.post(f"/projects/{project.pk}/ranking/import/", {"format": "ranking-jsonl", "file": bad})
    assert response.status_code == 400 and "line 1: context must be a non-empty list" in response.content.decode()
    assert RankingTask.objects.count() == 1
    labeler = make_member(project)
    assert _logged_in(client, labeler).get(f"/projects/{project.pk}/ranking/import/").status_code == 404


def test_project_page_shows_ranking_actions_by_role(client, project, make_member):
    RankingTaskFactory.create_batch(2, project=project)
    html = _logged_in(client, make_member(project)).get(f"/projects/{project.pk}/").content.decode()
    assert "Rank answers" in html and "2 waiting" in html and "My ranking stats" in html
    assert "Ranking quality" not in html and "Export preference pairs" not in html
    html = _logged_in(client, make_member(project, Role.MANAGER)).get(f"/projects/{project.pk}/").content.decode()
    assert "Ranking quality" in html and "Import ranking tasks" in html and "Export preference pairs" in html


def test_demo_seed_adds_ranking_tasks_once(monkeypatch):
    from django.core.management import call_command

    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-for-tests")
    call_command("seed_demo")
    call_command("ranking_seed_demo")
    call_command("ranking_seed_demo")
    tasks = RankingTask.objects.filter(project__slug="demo")
    assert tasks.count() == 3 and tasks.filter(is_gold=True).count() == 1
