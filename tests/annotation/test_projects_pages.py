import pytest
from django.test import Client

from annotation.models import Role
from annotation.services.projects import guideline_publish
from tests.factories import PASSWORD, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_pages_need_login():
    response = Client().get("/")
    assert response.status_code == 302
    assert response.url.startswith("/login/")


def test_dashboard_lists_only_my_projects(project, make_member):
    other = ProjectFactory(name="Secret project")
    user = make_member(project, Role.REVIEWER)
    client = Client()
    client.force_login(user)
    html = client.get("/").content.decode()
    assert project.name in html
    assert "Secret project" not in html
    assert client.get(f"/projects/{other.id}/").status_code == 404


def test_project_page_shows_the_newest_guidelines_sanitised(project, make_member):
    guideline_publish(project=project, body="old rules")
    guideline_publish(project=project, body="# New rules\n<img src=x onerror=alert(1)>")
    user = make_member(project)
    client = Client()
    client.force_login(user)
    html = client.get(f"/projects/{project.id}/").content.decode()
    assert "<h1>New rules</h1>" in html
    assert "old rules" not in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_login_page_blocks_after_repeated_failures(settings):
    user = UserFactory()
    client = Client()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        assert client.post("/login/", {"username": user.username, "password": "bad"}).status_code == 200
    response = client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()


def test_login_then_logout():
    user = UserFactory()
    client = Client()
    response = client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302 and response.url == "/"
    assert client.get("/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_admin_shows_a_manager_only_the_projects_they_manage(make_member):
    from django.contrib.auth.models import Permission

    mine, theirs = ProjectFactory(name="Mine"), ProjectFactory(name="Theirs")
    manager = make_member(mine, Role.MANAGER)
    manager.is_staff = True
    manager.save()
    manager.user_permissions.add(*Permission.objects.filter(content_type__app_label="annotation"))
    client = Client()
    client.force_login(manager)
    html = client.get("/admin/annotation/project/").content.decode()
    assert "Mine" in html and "Theirs" not in html
    assert client.get(f"/admin/annotation/project/{theirs.id}/change/").status_code == 302  # "doesn't exist" redirect


def test_guideline_versions_increase(project):
    first = guideline_publish(project=project, body="a")
    second = guideline_publish(project=project, body="b")
    assert (first.version, second.version) == (1, 2)
    assert project.current_guideline == second
