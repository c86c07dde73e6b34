"""`next` costs a fixed, small number of SQL statements, whatever the project holds (issue 11).

Each statement is a round trip to PostgreSQL and, through the ORM, CPU to build it: at about 20 per
call, `next` cost 74 ms at a million tasks where the pick itself took a few. These budgets are what
the calls cost now (session and user, project with my membership, my permissions, the lease
transaction, the answers); one more statement creeping in fails here, with the statements listed.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation.models import Dialogue, Role
from annotation.services.dialogues import prompt_lease_next
from ranking.models import Lease, Ranking
from ranking.services.leasing import ranking_task_lease_next, ranking_task_skip
from ranking.services.rankings import ranking_submit
from tests.annotation.factories import PromptFactory
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = pytest.mark.django_db

# session, user, project with membership, BEGIN, membership lock, my held lease, pick, lease write,
# COMMIT, my permissions (ML engineers see generators), the task's answers
RANKING_NEXT_BUDGET = 11
# session, user, project with membership, the queue walk, BEGIN, membership lock, my held draft, prompt
# lock, its slots, the draft, its turns, COMMIT (the new draft is shown as written, not read again)
PROMPT_NEXT_BUDGET = 12


def _statements(captured) -> str:
    return "\n".join(f"{number}. {query['sql'][:160]}" for number, query in enumerate(captured, start=1))


def _client(user) -> Client:
    client = Client()
    client.force_login(user)  # session authentication, as the rank page's requests
    return client


def _busy_project(project, make_member):
    """A project with some history: tasks ranked, skipped and leased by others and by me, leases expired."""
    project.rankings_per_task = 2
    project.save()
    labeler, others = make_member(project), [make_member(project) for _ in range(3)]
    tasks = RankingTaskFactory.create_batch(12, project=project)
    for task in tasks[:3]:
        ranking_submit(task=task, labeler=labeler, order=[[i] for i in response_ids(task)])
    ranking_task_skip(task=tasks[3], labeler=labeler)
    for other in others:
        lease = ranking_task_lease_next(project=project, labeler=other)
        Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    return labeler


def test_ranking_next_stays_within_its_statement_budget(project, make_member):
    labeler = _busy_project(project, make_member)
    client = _client(labeler)
    for _ in range(3):  # a new task each time: lease, then rank it
        with CaptureQueriesContext(connection) as captured:
            answer = client.post(f"/api/ranking-tasks/next/?project={project.pk}")
        assert answer.status_code == 200
        assert len(captured) <= RANKING_NEXT_BUDGET, _statements(captured)
        task = answer.json()
        submitted = client.post(
            f"/api/ranking-tasks/{task['id']}/rankings/",
            {"order": [[response["id"]] for response in task["responses"]]},
            content_type="application/json",
        )
        assert submitted.status_code == 201
    assert Ranking.objects.filter(labeler=labeler).count() == 6


def test_ranking_next_for_a_reload_of_the_same_lease_stays_within_the_budget(project, make_member):
    labeler = _busy_project(project, make_member)
    client = _client(labeler)
    first = client.post(f"/api/ranking-tasks/next/?project={project.pk}").json()
    with CaptureQueriesContext(connection) as captured:
        again = client.post(f"/api/ranking-tasks/next/?project={project.pk}")
    assert again.json()["id"] == first["id"]
    assert len(captured) <= RANKING_NEXT_BUDGET, _statements(captured)


def test_ranking_next_costs_the_same_statements_in_a_bigger_project(project, make_member):
    labeler = _busy_project(project, make_member)
    client = _client(labeler)
    with CaptureQueriesContext(connection) as small:
        client.post(f"/api/ranking-tasks/next/?project={project.pk}")
    RankingTaskFactory.create_batch(30, project=project, answers=2)
    for other in [make_member(project) for _ in range(4)]:
        ranking_task_lease_next(project=project, labeler=other)
    Lease.objects.filter(labeler=labeler).delete()  # ask again for a new task, not the held one
    with CaptureQueriesContext(connection) as bigger:
        client.post(f"/api/ranking-tasks/next/?project={project.pk}")
    assert len(bigger) == len(small), _statements(bigger)


def test_ranking_next_of_a_reviewer_reads_what_reviewers_see_in_a_fixed_number_of_statements(project, make_member):
    reviewer = make_member(project, Role.REVIEWER)
    RankingTaskFactory.create_batch(3, project=project)
    client = _client(reviewer)
    with CaptureQueriesContext(connection) as captured:
        answer = client.post(f"/api/ranking-tasks/next/?project={project.pk}")
    assert "generator" in answer.json()["responses"][0]
    assert len(captured) <= RANKING_NEXT_BUDGET + 2, _statements(captured)  # and the task's rankings


def test_prompt_next_stays_within_its_statement_budget(project, make_member):
    labeler = make_member(project)
    PromptFactory.create_batch(5, project=project)
    other = make_member(project)
    prompt_lease_next(project=project, user=other)  # a draft of someone else's in the queue
    client = _client(labeler)
    for _ in range(3):
        with CaptureQueriesContext(connection) as captured:
            answer = client.post(f"/api/dialogues/next-prompt/?project={project.pk}")
        assert answer.status_code == 201
        assert len(captured) <= PROMPT_NEXT_BUDGET, _statements(captured)
        # shown as written: what reading the draft back answers
        assert answer.json() == client.get(f"/api/dialogues/{answer.json()['id']}/").json()
        assert client.delete(f"/api/dialogues/{answer.json()['id']}/").status_code in (200, 204)
    assert not Dialogue.objects.filter(author=labeler).exists()


def test_prompt_next_for_a_reload_of_the_same_draft_shows_it_as_it_stands(project, make_member):
    labeler = make_member(project)
    PromptFactory.create_batch(2, project=project)
    client = _client(labeler)
    first = client.post(f"/api/dialogues/next-prompt/?project={project.pk}").json()
    turns = [{"role": "user", "content": first["turns"][0]["content"]}, {"role": "assistant", "content": "Draft."}]
    saved = client.patch(f"/api/dialogues/{first['id']}/", {"turns": turns, "version": first["version"]},
                         content_type="application/json")
    assert saved.status_code == 200, saved.content
    with CaptureQueriesContext(connection) as captured:
        again = client.post(f"/api/dialogues/next-prompt/?project={project.pk}")
    assert again.status_code == 200 and again.json()["turns"] == turns
    assert len(captured) <= PROMPT_NEXT_BUDGET + 2, _statements(captured)  # the held draft read as it stands
