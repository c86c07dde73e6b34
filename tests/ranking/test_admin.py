"""Admin: tasks with answers and rankings inline, filters, search, actions; managers see their projects only."""

import pytest

from annotation.models import Role
from ranking.models import RankingTask, TaskStatus
from ranking.services.rankings import ranking_submit
from tests.factories import ProjectFactory, UserFactory
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = pytest.mark.django_db

URL = "/admin/ranking/rankingtask/"


@pytest.fixture
def superuser(client):
    user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(user)
    return user


def test_changelist_filters_and_search(client, superuser, project):
    gold = RankingTaskFactory(project=project, answers=["needle answer", "b"], is_gold=True, gold_order=[[1], [2]])
    RankingTaskFactory(project=project, answers=2)
    assert client.get(URL).status_code == 200
    html = client.get(URL, {"is_gold__exact": "1"}).content.decode()
    assert f'value="{gold.pk}"' in html and html.count('name="_selected_action"') == 1
    html = client.get(URL, {"q": "needle"}).content.decode()
    assert html.count('name="_selected_action"') == 1
    for status in TaskStatus.values:
        assert client.get(URL, {"status__exact": status}).status_code == 200


def test_change_page_shows_answers_and_rankings_inline(client, superuser, project, make_member):
    task = RankingTaskFactory(project=project, answers=["first answer", "second answer"])
    ranking_submit(task=task, labeler=make_member(project, username="ranker"), order=[[i] for i in response_ids(task)])
    html = client.get(f"{URL}{task.pk}/change/").content.decode()
    assert "first answer" in html and "ranker" in html


def test_actions_recompute_and_mark_gold(client, superuser, project, make_member):
    project.rankings_per_task = 1
    project.save()
    task = RankingTaskFactory(project=project, answers=2)
    a, b = response_ids(task)
    ranking_submit(task=task, labeler=make_member(project), order=[[b], [a]])
    RankingTask.objects.filter(pk=task.pk).update(consensus_order=None, status=TaskStatus.OPEN)
    client.post(URL, {"action": "recompute_consensus", "_selected_action": [task.pk]})
    task.refresh_from_db()
    assert task.consensus_order == [[b], [a]] and task.status == TaskStatus.COMPLETE
    client.post(URL, {"action": "mark_gold_from_consensus", "_selected_action": [task.pk]})
    task.refresh_from_db()
    assert task.is_gold and task.gold_order == [[b], [a]] and task.status == TaskStatus.OPEN
    client.post(URL, {"action": "disable", "_selected_action": [task.pk]})
    task.refresh_from_db()
    assert task.status == TaskStatus.DISABLED


def test_staff_managers_see_only_their_projects_tasks(client, project, make_member):
    mine = RankingTaskFactory(project=project, answers=2)
    other = RankingTaskFactory(project=ProjectFactory(), answers=2)
    manager = make_member(project, Role.MANAGER)
    manager.is_staff = True
    manager.save()
    from django.contrib.auth.models import Permission

    manager.user_permissions.add(*Permission.objects.filter(content_type__app_label="ranking"))
    client.force_login(manager)
    html = client.get(URL).content.decode()
    assert f'value="{mine.pk}"' in html and f'value="{other.pk}"' not in html
    assert client.get(f"{URL}{other.pk}/change/").status_code == 302  # not found -> back to the list
