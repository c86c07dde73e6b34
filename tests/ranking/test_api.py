"""The ranking REST API: permission matrix, task payloads, leasing, submission errors, idempotency."""

import io
import json

import pytest

from annotation.models import Role
from ranking.models import Ranking, RankingTask
from ranking.services.tasks import ranking_task_gold_set
from tests.ranking.factories import RankingFactory, RankingTaskFactory, response_ids

pytestmark = pytest.mark.django_db

TASK_BODY = {
    "context": [{"role": "user", "content": "Name a **prime** number."}],
    "responses": [{"content": "7", "generator": "policy-v2"}, {"content": "9", "generator": "policy-v2"}],
}


def _call(client, name, project, task):
    """Make the request for operation ``name`` and return the response."""
    ids = response_ids(task)
    hh = io.BytesIO(b'{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: hello", "rejected": "\\n\\nHuman: hi\\n\\nAssistant: go"}\n')
    hh.name = "hh.jsonl"
    return {
        "create": lambda: client.post("/api/ranking-tasks/", {**TASK_BODY, "project": project.pk}, format="json"),
        "list": lambda: client.get(f"/api/ranking-tasks/?project={project.pk}"),
        "detail": lambda: client.get(f"/api/ranking-tasks/{task.pk}/"),
        "next": lambda: client.post(f"/api/ranking-tasks/next/?project={project.pk}"),
        "skip": lambda: client.post(f"/api/ranking-tasks/{task.pk}/skip/", {}, format="json"),
        "rank": lambda: client.post(f"/api/ranking-tasks/{task.pk}/rankings/", {"order": [[i] for i in ids]}, format="json"),
        "gold": lambda: client.post(f"/api/ranking-tasks/{task.pk}/gold/", {"order": [[i] for i in ids]}, format="json"),
        "import": lambda: client.post("/api/ranking-tasks/import/", {"project": project.pk, "format": "hh-rlhf", "file": hh},
                                      format="multipart"),
        "export": lambda: client.get(f"/api/projects/{project.pk}/export/preferences.jsonl"),
        "export_hh": lambda: client.get(f"/api/projects/{project.pk}/export/hh-rlhf.jsonl"),
        "stats": lambda: client.get(f"/api/projects/{project.pk}/ranking-stats/me/"),
        "quality": lambda: client.get(f"/api/projects/{project.pk}/ranking-quality/"),
    }[name]()


# Like the rest of the API, a member whose role is too low gets 404, as if the project weren't there.
#            operation: anonymous, outsider, labeler, reviewer, manager, ml_engineer (member), ml_engineer_outsider
MATRIX = {
    "create":    (401, 404, 404, 404, 201, 201, 404),
    "list":      (401, 404, 404, 200, 200, 200, 404),
    "detail":    (401, 404, 200, 200, 200, 200, 404),
    "next":      (401, 404, 200, 200, 200, 200, 404),
    "skip":      (401, 404, 204, 204, 204, 204, 404),
    "rank":      (401, 404, 201, 201, 201, 201, 404),
    "gold":      (401, 404, 404, 404, 200, 404, 404),
    "import":    (401, 404, 404, 404, 201, 404, 404),
    "export":    (401, 404, 404, 404, 200, 200, 404),
    "export_hh": (401, 404, 404, 404, 200, 200, 404),
    "stats":     (401, 404, 200, 200, 200, 200, 404),
    "quality":   (401, 404, 404, 404, 200, 404, 404),
}
WHO = ["anonymous", "outsider", "labeler", "reviewer", "manager", "ml_engineer", "ml_engineer_outsider"]


@pytest.mark.parametrize("operation", MATRIX)
@pytest.mark.parametrize("role_index", range(len(WHO)), ids=WHO)
def test_permission_matrix(api_client_for, project, who, operation, role_index):
    task = RankingTaskFactory(project=project, answers=2)
    user = who(WHO[role_index])
    response = _call(api_client_for(user), operation, project, task)
    assert response.status_code == MATRIX[operation][role_index], getattr(response, "data", response)


def test_labelers_see_no_generator_gold_or_others_rankings(api_client_for, project, make_member):
    task = RankingTaskFactory(project=project, answers=3)
    ranking_task_gold_set(task=task, order=[[i] for i in response_ids(task)])
    RankingFactory(task=task)
    labeler = make_member(project)
    data = api_client_for(labeler).get(f"/api/ranking-tasks/{task.pk}/").json()
    assert set(data) == {"id", "project", "prompt", "status", "purpose", "context", "responses",
                         "rankings_required", "lease_expires_at", "my_ranking"}
    assert all(set(r) == {"id", "content"} for r in data["responses"])
    manager = make_member(project, Role.MANAGER)
    full = api_client_for(manager).get(f"/api/ranking-tasks/{task.pk}/").json()
    assert full["is_gold"] is True and full["ranking_count"] == 1 and full["responses"][0]["generator"] == "policy-v1"


def test_answers_are_shuffled_per_labeler_and_stable_across_reloads(api_client_for, project, make_member):
    task = RankingTaskFactory(project=project, answers=9)
    orders = set()
    for _ in range(6):
        client = api_client_for(make_member(project))
        first = [r["id"] for r in client.get(f"/api/ranking-tasks/{task.pk}/").json()["responses"]]
        assert first == [r["id"] for r in client.get(f"/api/ranking-tasks/{task.pk}/").json()["responses"]]
        assert sorted(first) == response_ids(task)
        orders.add(tuple(first))
    assert len(orders) > 1  # 9! orders: six labelers all getting one is astronomically unlikely


def test_created_task_comes_back_with_its_answers_and_gold(api_client_for, project, make_member):
    manager = make_member(project, Role.MANAGER)
    body = {**TASK_BODY, "project": project.pk, "gold_order": [[0], [1]]}
    response = api_client_for(manager).post("/api/ranking-tasks/", body, format="json")
    assert response.status_code == 201
    data = response.json()
    ids = sorted(r["id"] for r in data["responses"])
    assert data["is_gold"] is True and data["gold_order"] == [[ids[0]], [ids[1]]]
    assert data["context"] == TASK_BODY["context"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"context": [{"role": "assistant", "content": "x"}]}, "must end with a user"),
        ({"responses": [{"content": "only"}]}, "2 to 9 answers"),
        ({"context": [{"role": "wizard", "content": "x"}]}, "context"),
        ({"gold_order": [[0]]}, "gold_order"),
    ],
)
def test_bad_tasks_are_refused_with_400_and_a_message(api_client_for, project, make_member, body, message):
    manager = make_member(project, Role.MANAGER)
    response = api_client_for(manager).post("/api/ranking-tasks/", {**TASK_BODY, "project": project.pk, **body},
                                            format="json")
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not RankingTask.objects.exists()


def test_next_leases_then_204_when_nothing_is_left(api_client_for, project, make_member):
    project.rankings_per_task = 1
    project.save()
    task = RankingTaskFactory(project=project, answers=2)
    client = api_client_for(make_member(project))
    leased = client.post(f"/api/ranking-tasks/next/?project={project.pk}")
    assert leased.status_code == 200 and leased.json()["id"] == task.pk and leased.json()["lease_expires_at"]
    ids = [r["id"] for r in leased.json()["responses"]]
    assert client.post(f"/api/ranking-tasks/{task.pk}/rankings/", {"order": [ids]}, format="json").status_code == 201
    assert client.post(f"/api/ranking-tasks/next/?project={project.pk}").status_code == 204
    assert api_client_for(make_member(project)).post(f"/api/ranking-tasks/next/?project={project.pk}").status_code == 204


@pytest.mark.parametrize(
    ("make_order", "message"),
    [
        (lambda a, b, c, d: [[a], [b], [c]], "misses these answers of the task"),
        (lambda a, b, c, d: [[a], [b, b], [c], [d]], "more than once"),
        (lambda a, b, c, d: [[a], [b], [c], [d], [999999]], "not answers of this task: 999999"),
        (lambda a, b, c, d: [a, b, c, d], "must be a non-empty list of response ids"),
        (lambda a, b, c, d: "a,b,c,d", "must be a non-empty list of groups"),
        (lambda a, b, c, d: [[a], [], [b, c, d]], "must be a non-empty list of response ids"),
    ],
)
def test_bad_orderings_are_400_with_a_clear_message(api_client_for, project, make_member, make_order, message):
    task = RankingTaskFactory(project=project, answers=4)
    other = RankingTaskFactory(project=project, answers=4)
    ids = response_ids(task)
    order = make_order(*ids)
    if message.startswith("not answers") and isinstance(order, list):
        order[-1] = [response_ids(other)[0]]  # a real answer, of another task
        message = f"not answers of this task: {response_ids(other)[0]}"
    response = api_client_for(make_member(project)).post(
        f"/api/ranking-tasks/{task.pk}/rankings/", {"order": order}, format="json"
    )
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not Ranking.objects.exists()


def test_missing_order_is_400(api_client_for, project, make_member):
    task = RankingTaskFactory(project=project, answers=2)
    response = api_client_for(make_member(project)).post(f"/api/ranking-tasks/{task.pk}/rankings/", {}, format="json")
    assert response.status_code == 400 and "order" in response.json()["detail"]


def test_retry_with_idempotency_key_returns_the_first_result_with_the_same_status(api_client_for, project, make_member):
    task = RankingTaskFactory(project=project, answers=3)
    a, b, c = response_ids(task)
    client = api_client_for(make_member(project))
    url = f"/api/ranking-tasks/{task.pk}/rankings/"
    body = {"order": [[a], [b, c]], "flags": {str(b): ["hallucination"]}, "scores": {str(a): 6}, "time_spent_ms": 4000}
    first = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="abc-123")
    retry = client.post(url, {**body, "order": [[c], [b], [a]]}, format="json", HTTP_IDEMPOTENCY_KEY="abc-123")
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry["Idempotent-Replayed"] == "true"
    assert first.json()["order"] == [[a], [b, c]] and first.json()["flags"] == {str(b): ["hallucination"]}
    assert Ranking.objects.count() == 1
    without_key = client.post(url, body, format="json")
    assert without_key.status_code == 409 and "already ranked" in without_key.json()["detail"]


def test_my_ranking_shows_on_the_task_after_submitting(api_client_for, project, make_member):
    task = RankingTaskFactory(project=project, answers=2)
    a, b = response_ids(task)
    client = api_client_for(make_member(project))
    client.post(f"/api/ranking-tasks/{task.pk}/rankings/", {"order": [[b], [a]], "all_bad": True}, format="json")
    mine = client.get(f"/api/ranking-tasks/{task.pk}/").json()["my_ranking"]
    assert mine["order"] == [[b], [a]] and mine["all_bad"] is True


def test_consensus_is_in_the_task_once_complete(api_client_for, project, make_member):
    project.rankings_per_task = 2
    project.save()
    task = RankingTaskFactory(project=project, answers=2)
    a, b = response_ids(task)
    manager = make_member(project, Role.MANAGER)
    for _ in range(2):
        api_client_for(make_member(project)).post(
            f"/api/ranking-tasks/{task.pk}/rankings/", {"order": [[b], [a]]}, format="json"
        )
    data = api_client_for(manager).get(f"/api/ranking-tasks/{task.pk}/").json()
    assert data["status"] == "complete" and data["consensus_order"] == [[b], [a]] and data["agreement"] == 1.0


def test_list_filters_by_status_and_gold(api_client_for, project, make_member):
    gold = RankingTaskFactory(project=project, answers=2)
    ranking_task_gold_set(task=gold, order=[[i] for i in response_ids(gold)])
    RankingTaskFactory(project=project, answers=2)
    client = api_client_for(make_member(project, Role.MANAGER))
    data = client.get(f"/api/ranking-tasks/?project={project.pk}&is_gold=true").json()
    assert data["count"] == 1 and data["results"][0]["id"] == gold.pk
    assert client.get(f"/api/ranking-tasks/?project={project.pk}&status=complete").json()["count"] == 0


def test_stats_me_counts_my_rankings(api_client_for, project, make_member):
    labeler = make_member(project)
    client = api_client_for(labeler)
    for task in RankingTaskFactory.create_batch(2, project=project, answers=2):
        client.post(f"/api/ranking-tasks/{task.pk}/rankings/",
                    {"order": [[i] for i in response_ids(task)], "time_spent_ms": 3000}, format="json")
    data = client.get(f"/api/projects/{project.pk}/ranking-stats/me/").json()
    assert data["ranked"] == 2 and data["ranked_today"] == 2 and data["median_time_ms"] == 3000


def test_unknown_export_mode_is_400(api_client_for, project, make_member):
    client = api_client_for(make_member(project, Role.MANAGER))
    response = client.get(f"/api/projects/{project.pk}/export/preferences.jsonl?pairs=everything")
    assert response.status_code == 400 and "pairs must be one of" in response.json()["detail"]


def test_import_errors_come_back_as_400_with_line_numbers(api_client_for, project, make_member):
    bad = io.BytesIO(b'{"context": [{"role": "user", "content": "q"}], "responses": ["a", "b"]}\nnot json\n')
    bad.name = "tasks.jsonl"
    response = api_client_for(make_member(project, Role.MANAGER)).post(
        "/api/ranking-tasks/import/", {"project": project.pk, "format": "ranking-jsonl", "file": bad}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == ["line 2: not valid JSON (Expecting value)"]
    assert not RankingTask.objects.exists()
    assert json.loads(json.dumps(response.json()))["error_count"] == 1


def test_a_task_can_point_at_a_queue_prompt_and_take_its_text_as_context(api_client_for, project, make_member):
    from annotation.models import Prompt
    from tests.factories import ProjectFactory

    prompt = Prompt.objects.create(project=project, text="Write a limerick.", text_hash="h1")
    foreign = Prompt.objects.create(project=ProjectFactory(), text="Other", text_hash="h2")
    client = api_client_for(make_member(project, Role.MANAGER))
    body = {"project": project.pk, "prompt": prompt.pk, "responses": TASK_BODY["responses"]}
    response = client.post("/api/ranking-tasks/", body, format="json")
    assert response.status_code == 201
    assert response.json()["prompt"] == prompt.pk
    assert response.json()["context"] == [{"role": "user", "content": "Write a limerick."}]
    refused = client.post("/api/ranking-tasks/", {**body, "prompt": foreign.pk}, format="json")
    assert refused.status_code == 400 and "no prompt" in refused.json()["detail"]
    missing = client.post("/api/ranking-tasks/", {"project": project.pk, "responses": TASK_BODY["responses"]},
                          format="json")
    assert missing.status_code == 400 and "context" in missing.json()["detail"]


def test_the_task_list_costs_the_same_queries_for_3_or_30_tasks(
    api_client_for, project, make_member, django_assert_max_num_queries
):
    reviewer = make_member(project, Role.REVIEWER)
    client = api_client_for(reviewer)
    for _ in range(30):
        task = RankingTaskFactory(project=project, answers=3)
        RankingFactory(task=task, labeler=make_member(project))
        RankingFactory(task=task, labeler=reviewer)
    with django_assert_max_num_queries(12):
        response = client.get(f"/api/ranking-tasks/?project={project.pk}&limit=30")
    assert response.status_code == 200 and len(response.json()["results"]) == 30
    first = response.json()["results"][0]
    assert len(first["responses"]) == 3 and first["ranking_count"] == 2 and first["my_ranking"] is not None
    assert {r["labeler"] for r in first["rankings"]} >= {reviewer.username}


@pytest.mark.parametrize("query", ["", "?project="])
def test_next_and_list_without_a_project_id_say_what_to_send(api_client_for, project, make_member, query):
    client = api_client_for(make_member(project, Role.MANAGER))
    for response in (client.post(f"/api/ranking-tasks/next/{query}"), client.get(f"/api/ranking-tasks/{query}")):
        assert response.status_code == 400 and "project" in response.json()["detail"]
