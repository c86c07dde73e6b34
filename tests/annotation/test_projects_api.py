import pytest

from annotation.models import Role
from tests.factories import PASSWORD, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_token_flow_gives_a_new_expiring_token_each_time(api_client_for, project, make_member):
    user = make_member(project)
    client = api_client_for()
    response = client.post("/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    listed = client.get("/api/projects/")
    assert listed.status_code == 200
    assert [p["id"] for p in listed.json()] == [project.id]
    assert response.json()["name"] == "API login" and response.json()["expires_at"]
    # asking again gives another token; both work until they expire or are revoked
    again = api_client_for().post("/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json")
    assert again.json()["token"] != token
    assert client.get("/api/projects/").status_code == 200


def test_wrong_password_is_refused_with_a_message(api_client_for):
    user = UserFactory()
    response = api_client_for().post("/api/auth/token/", {"username": user.username, "password": "nope"}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == "Wrong username or password."


def test_repeated_failed_logins_answer_429_even_with_the_right_password(api_client_for, settings):
    user = UserFactory()
    client = api_client_for()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        assert client.post("/api/auth/token/", {"username": user.username, "password": "bad"}).status_code == 400
    blocked = client.post("/api/auth/token/", {"username": user.username, "password": PASSWORD})
    assert blocked.status_code == 429
    assert "Too many failed logins" in blocked.json()["detail"]
    assert 0 < int(blocked["Retry-After"]) <= settings.LOGIN_FAILURE_WINDOW_SECONDS


@pytest.mark.parametrize("path", ["/api/projects/", "/api/projects/1/", "/api/projects/1/members/"])
def test_unauthenticated_requests_are_refused(api_client_for, path):
    response = api_client_for().get(path)
    assert response.status_code == 401


def test_bad_token_is_refused(api_client_for):
    client = api_client_for()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get("/api/projects/").status_code == 401


def test_a_non_member_gets_404_on_a_project(api_client_for, project):
    outsider = UserFactory()
    response = api_client_for(outsider).get(f"/api/projects/{project.id}/")
    assert response.status_code == 404
    assert api_client_for(outsider).get("/api/projects/").json() == []


def test_a_missing_project_answers_like_a_foreign_one(api_client_for, project, make_member):
    user = make_member(project)
    assert api_client_for(user).get("/api/projects/999999/").status_code == 404


def test_member_sees_project_with_role_and_sanitised_guidelines(api_client_for, project, make_member):
    from annotation.services.projects import guideline_publish

    guideline_publish(project=project, body="**Be kind** <script>alert(1)</script>")
    user = make_member(project, Role.REVIEWER)
    data = api_client_for(user).get(f"/api/projects/{project.id}/").json()
    assert data["name"] == project.name
    assert data["my_role"] == "reviewer"
    assert "<strong>Be kind</strong>" in data["guidelines_html"]
    assert "<script>" not in data["guidelines_html"]
    assert "&lt;script&gt;" in data["guidelines_html"]


def test_members_list_is_for_managers_only(api_client_for, project, make_member):
    manager = make_member(project, Role.MANAGER)
    labeler = make_member(project, Role.LABELER)
    reviewer = make_member(project, Role.REVIEWER)
    response = api_client_for(manager).get(f"/api/projects/{project.id}/members/")
    assert response.status_code == 200
    assert {(m["username"], m["role"]) for m in response.json()} == {
        (manager.username, "manager"), (labeler.username, "labeler"), (reviewer.username, "reviewer")
    }
    assert api_client_for(labeler).get(f"/api/projects/{project.id}/members/").status_code == 404
    assert api_client_for(reviewer).get(f"/api/projects/{project.id}/members/").status_code == 404


def test_manager_of_one_project_sees_nothing_of_another(api_client_for, make_member):
    mine, theirs = ProjectFactory(), ProjectFactory()
    manager = make_member(mine, Role.MANAGER)
    make_member(theirs, Role.MANAGER)
    client = api_client_for(manager)
    assert client.get(f"/api/projects/{theirs.id}/").status_code == 404
    assert client.get(f"/api/projects/{theirs.id}/members/").status_code == 404
    assert [p["id"] for p in client.get("/api/projects/").json()] == [mine.id]


def test_markdown_preview_escapes_html(api_client_for, project, make_member):
    user = make_member(project)
    response = api_client_for(user).post("/api/markdown/preview/", {"text": "<img src=x onerror=alert(1)> *hi*"})
    assert response.status_code == 200
    html = response.json()["html"]
    assert "<img" not in html and "&lt;img" in html and "<em>hi</em>" in html


def test_my_project_list_costs_the_same_queries_for_any_number_of_projects(
    api_client_for, django_assert_max_num_queries
):
    from tests.factories import GuidelineFactory, MembershipFactory

    user = UserFactory()
    for index in range(15):
        project = ProjectFactory()
        MembershipFactory(project=project, user=user, role=Role.MANAGER if index == 0 else Role.LABELER)
        GuidelineFactory(project=project, version=1, body="old")
        GuidelineFactory(project=project, version=2, body=f"Rule **{index}**")
    client = api_client_for(user)
    with django_assert_max_num_queries(5):
        data = client.get("/api/projects/").json()
    assert len(data) == 15
    assert sorted(p["my_role"] for p in data) == ["labeler"] * 14 + ["manager"]
    assert all("<strong>" in p["guidelines_html"] and "old" not in p["guidelines_html"] for p in data)
