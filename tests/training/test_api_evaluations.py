"""The evaluation API, the model detail's ratings and the pages that show evaluations: who sees what, shapes, refusals."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from annotation.models import Role
from ranking.models import TaskPurpose
from tests.annotation.factories import PromptFactory
from tests.factories import MembershipFactory, UserFactory
from tests.training.evaluations import answer_of, evaluation_answered, judge_all
from tests.training.factories import ModelVersionFactory
from training.models import Evaluation, LoopPolicy, ModelKind, RunState

pytestmark = pytest.mark.django_db


@pytest.fixture
def engineer(project):
    user = UserFactory()
    user.user_permissions.add(Permission.objects.get(codename="use_training_api"))
    MembershipFactory(project=project, user=user, role=Role.LABELER)
    return user


@pytest.fixture
def api(api_client_for, engineer):
    return api_client_for(engineer)


def _models(project, *names):
    return [ModelVersionFactory(project=project, kind=ModelKind.SFT, name=name) for name in names]


def test_an_evaluation_is_started_with_202_and_followed_until_its_results(api, engineer, project, data_root):
    old, new = _models(project, "sft-v1", "sft-v2")
    PromptFactory.create_batch(4, project=project)
    response = api.post("/api/evaluations/", {"project": project.pk, "models": [new.pk, old.pk], "num_prompts": 3,
                                              "config": {"max_new_tokens": 32}}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["models"] == [{"id": new.pk, "name": "sft-v2", "kind": "sft"}, {"id": old.pk, "name": "sft-v1", "kind": "sft"}]
    assert [run["state"] for run in body["runs"]] == ["queued", "queued"] and body["state"] == "sampling"
    assert (body["prompts"], body["tasks_created"], body["judgements"], body["trigger"]) == (3, 0, 0, "manual")
    assert body["created_by"] == engineer.username

    listed = api.get(f"/api/evaluations/?project={project.pk}").json()
    assert [item["id"] for item in listed["results"]] == [body["id"]]

    judged = evaluation_answered(project, [new, old], prompts=2)
    judge_all(judged, [new, new, old, None])
    detail = api.get(f"/api/evaluations/{judged.pk}/").json()
    assert (detail["state"], detail["judgements"], detail["judgements_needed"], detail["tasks_open"]) == (
        "judging", 4, 6, 2)
    [pair] = detail["results"]["pairs"]
    assert (pair["model_a"]["name"], pair["wins_a"], pair["wins_b"], pair["ties"], pair["judgements"]) == (
        "sft-v2", 2, 1, 1, 4)
    assert pair["win_rate"] == pytest.approx(0.625) and 0 < pair["ci_low"] < 0.625 < pair["ci_high"] < 1
    assert [rating["model"]["name"] for rating in detail["results"]["ratings"]] == ["sft-v2", "sft-v1"]

    model = api.get(f"/api/models/{new.pk}/").json()
    assert model["judged"]["rating"] > 1000 and model["judged"]["judgements"] == 4
    [record] = model["judged"]["opponents"]
    assert (record["model_b"]["name"], record["wins_a"], record["wins_b"], record["ties"]) == ("sft-v1", 2, 1, 1)
    assert api.get(f"/api/models/{_models(project, 'never-judged')[0].pk}/").json()["judged"] is None


@pytest.mark.parametrize("who", ["outsider", "labeler", "reviewer", "ml_engineer_outsider"])
def test_only_managers_and_member_engineers_see_evaluations_others_get_404(api_client_for, project, who, make_member):
    a, b = _models(project, "a", "b")
    evaluation = evaluation_answered(project, [a, b], prompts=1)
    user = {
        "outsider": lambda: UserFactory(),
        "labeler": lambda: make_member(project, Role.LABELER),
        "reviewer": lambda: make_member(project, Role.REVIEWER),
        "ml_engineer_outsider": lambda: _engineer_elsewhere(),
    }[who]()
    client = api_client_for(user)
    assert client.get(f"/api/evaluations/{evaluation.pk}/").status_code == 404
    assert client.get(f"/api/evaluations/?project={project.pk}").status_code == 404
    assert client.get("/api/evaluations/").json()["results"] == []
    response = client.post("/api/evaluations/", {"project": project.pk, "models": [a.pk, b.pk], "num_prompts": 1},
                           format="json")
    assert response.status_code == 404
    assert Evaluation.objects.count() == 1
    manager = make_member(project, Role.MANAGER)
    assert api_client_for(manager).get(f"/api/evaluations/{evaluation.pk}/").status_code == 200


def _engineer_elsewhere():
    user = UserFactory()
    user.user_permissions.add(Permission.objects.get(codename="use_training_api"))
    return user


@pytest.mark.parametrize("change, field", [
    ({"models": []}, "models"),
    ({"num_prompts": 0}, "num_prompts"),
    ({"models": "foreign"}, "models"),
    ({"models": "reward"}, "models"),
])
def test_a_bad_evaluation_is_refused_with_a_400_naming_the_field(api, project, change, field):
    a, b = _models(project, "a", "b")
    PromptFactory(project=project)
    body = {"project": project.pk, "models": [a.pk, b.pk], "num_prompts": 5, **change}
    if change.get("models") == "foreign":
        body["models"] = [a.pk, ModelVersionFactory(kind=ModelKind.SFT).pk]
    if change.get("models") == "reward":
        body["models"] = [a.pk, ModelVersionFactory(project=project, kind=ModelKind.REWARD).pk]
    response = api.post("/api/evaluations/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json().get("errors", {}) or field in response.json()["detail"]
    assert not Evaluation.objects.exists()


def test_a_labeler_sees_an_evaluation_task_without_its_models_and_judges_it_through_the_api(
    api_client_for, project, make_member
):
    a, b = _models(project, "a", "b")
    task = evaluation_answered(project, [a, b], prompts=1).tasks.get()
    labeler = make_member(project, Role.LABELER)
    client = api_client_for(labeler)
    leased = client.post(f"/api/ranking-tasks/next/?project={project.pk}").json()
    assert leased["id"] == task.pk and leased["purpose"] == TaskPurpose.EVALUATION
    assert all("generator" not in response for response in leased["responses"])
    refused = client.post(f"/api/ranking-tasks/{task.pk}/rankings/",
                          {"order": [[answer_of(task, a), answer_of(task, b)], []]}, format="json")
    assert refused.status_code == 400
    ok = client.post(f"/api/ranking-tasks/{task.pk}/rankings/",
                     {"order": [[answer_of(task, b)], [answer_of(task, a)]]}, format="json")
    assert ok.status_code == 201, ok.content


def test_the_loop_api_reads_and_sets_the_minimum_win_rate(api, project):
    response = api.patch(f"/api/projects/{project.pk}/loop/", {"min_win_rate_to_promote": 0.55,
                                                               "evaluation_prompts": 80}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["min_win_rate_to_promote"], response.json()["evaluation_prompts"]) == (0.55, 80)
    assert LoopPolicy.objects.get(project=project).min_win_rate_to_promote == 0.55
    assert api.patch(f"/api/projects/{project.pk}/loop/", {"min_win_rate_to_promote": 1.5},
                     format="json").status_code == 400
    response = api.patch(f"/api/projects/{project.pk}/loop/", {"min_win_rate_to_promote": None}, format="json")
    assert response.json()["min_win_rate_to_promote"] is None


# ---- pages ----


def test_the_models_page_shows_ratings_each_evaluation_and_a_form_to_start_one(client, project, make_member):
    manager = make_member(project, Role.MANAGER)
    new, old = _models(project, "sft-<b>v2</b>", "sft-v1")
    judge_all(evaluation_answered(project, [new, old], prompts=2), [new, new, new, old, None, new])
    sampling = evaluation_answered(project, [old, new], prompts=1)
    sampling.ingested_at = None
    sampling.save()
    for entry in sampling.entries.all():
        entry.run.state = RunState.RUNNING
        entry.run.save()
    client.force_login(manager)
    html = client.get(f"/projects/{project.pk}/training/models/").content.decode()
    assert 'id="ratings"' in html and "sft-&lt;b&gt;v2&lt;/b&gt;" in html and "<b>v2</b>" not in html
    assert f'data-pair="{new.pk}-{old.pk}"' in html
    assert "4 · 1 · 1" in html and "75.0\u00a0%" in html  # (4 + 0.5) / 6
    assert "judged by people: rated" in html
    assert "The models answer" in html and 'id="evaluation-form"' in html

    home = client.get(f"/projects/{project.pk}/training/").content.decode()
    assert 'id="evaluations-card"' in home and "75.0\u00a0%" in home
