"""Input that can't be right answers 4xx with a message, never 500 (found by fuzzing the schema)."""

import pytest

from annotation.models import Role

pytestmark = pytest.mark.django_db

HUGE = "4184193666378672020817707008"  # past PostgreSQL's bigint range


@pytest.mark.parametrize(
    "path",
    [
        f"/api/projects/{HUGE}/",
        f"/api/projects/{HUGE}/members/",
        f"/api/dialogues/{HUGE}/",
        f"/api/ranking-tasks/{HUGE}/",
        f"/projects/{HUGE}/",
    ],
)
def test_ids_past_the_database_range_are_not_found(api_client_for, project, make_member, path):
    user = make_member(project, Role.MANAGER)
    client = api_client_for(user)
    client.force_login(user)
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("query", [f"?project={HUGE}", "?project=-3", "?project=abc"])
def test_a_project_filter_that_is_no_id_is_refused_with_a_message(api_client_for, project, make_member, query):
    user = make_member(project)
    response = api_client_for(user).get(f"/api/dialogues/{query}")
    assert response.status_code == 400
    assert "project" in response.json()["detail"]


def test_next_task_with_a_huge_project_id_is_not_found(api_client_for, project, make_member):
    user = make_member(project)
    assert api_client_for(user).post(f"/api/ranking-tasks/next/?project={HUGE}").status_code == 404


@pytest.mark.parametrize("body", [[None, None], "just text", {"text": None}, {"text": "x" * 100_001}])
def test_markdown_preview_refuses_a_body_that_is_not_text(api_client_for, project, make_member, body):
    user = make_member(project)
    response = api_client_for(user).post("/api/markdown/preview/", body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "path", ["/api/dialogues/", "/api/prompts/", "/api/ranking-tasks/", "/api/markdown/preview/", "/api/auth/token/"]
)
def test_a_json_body_nested_too_deeply_is_refused_with_a_message(api_client_for, project, make_member, path):
    user = make_member(project, Role.MANAGER)
    body = "[" * 100_000 + "]" * 100_000
    response = api_client_for(user).post(path, body, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


def test_nested_validation_errors_read_as_one_line_with_their_path():
    from config.exceptions import _summarise

    errors = {
        "context": [{}, {"role": ["\"robot\" is not a valid choice."]}],
        "responses": ["Give at least 2 answers."],
        "non_field_errors": ["Something is off."],
    }
    assert _summarise(errors) == (
        'context.1.role: "robot" is not a valid choice.; responses: Give at least 2 answers.; Something is off.'
    )


def test_a_ranking_task_with_a_bad_nested_role_answers_a_readable_400(api_client_for, project, make_member):
    user = make_member(project, Role.MANAGER)
    body = {
        "project": project.id,
        "context": [{"role": "robot", "content": "hi"}],
        "responses": [{"content": "a", "generator": "g"}, {"content": "b", "generator": "g"}],
    }
    response = api_client_for(user).post("/api/ranking-tasks/", body, format="json")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("context.0.role:") and "ErrorDetail" not in detail
