"""The user admin shows a staff manager only the people of the projects they manage (emails included)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from annotation.models import Role
from tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(make_member):
    a, b = ProjectFactory(name="Project A"), ProjectFactory(name="Project B")
    mine = make_member(a, Role.LABELER, username="labeler-of-a")
    theirs = make_member(b, Role.LABELER, username="labeler-of-b")
    theirs.email = "secret-b@example.org"
    theirs.save()
    loner = UserFactory(username="nobody-yet", email="loner@example.org")
    manager = make_member(a, Role.MANAGER, username="manager-a")
    manager.is_staff = True
    manager.save()
    manager.user_permissions.add(Permission.objects.get(codename="view_user", content_type__app_label="auth"))
    return {"manager": get_user_model().objects.get(pk=manager.pk), "mine": mine, "theirs": theirs, "loner": loner}


def test_a_staff_manager_lists_and_opens_only_their_projects_people(client, people):
    client.force_login(people["manager"])
    listing = client.get("/admin/auth/user/")
    assert listing.status_code == 200
    body = listing.content.decode()
    assert "labeler-of-a" in body and "manager-a" in body
    assert "labeler-of-b" not in body and "secret-b@example.org" not in body and "nobody-yet" not in body
    assert client.get(f"/admin/auth/user/{people['mine'].pk}/change/").status_code == 200
    # another project's labeler is as if they did not exist (admin redirects with "doesn't exist")
    response = client.get(f"/admin/auth/user/{people['theirs'].pk}/change/", follow=True)
    assert "secret-b@example.org" not in response.content.decode()


def test_a_superuser_still_sees_everyone(admin_client, people):
    body = admin_client.get("/admin/auth/user/").content.decode()
    assert all(name in body for name in ("labeler-of-a", "labeler-of-b", "nobody-yet"))
