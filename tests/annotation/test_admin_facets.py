"""Django admin's "Show counts" (facets) works with the project and member filters (it answered 500)."""

import pytest

from annotation.models import Role
from tests.annotation.factories import DialogueFactory
from tests.factories import UserFactory


@pytest.mark.django_db
def test_changelists_with_facet_counts_answer_200(client, project, make_member):
    DialogueFactory(project=project, author=make_member(project, Role.LABELER))
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    for url in ("/admin/annotation/dialogue/", "/admin/ranking/rankingtask/", "/admin/ranking/ranking/"):
        response = client.get(url, {"_facets": "True"})
        assert response.status_code == 200, url
    response = client.get("/admin/annotation/dialogue/", {"_facets": "True", "project__id__exact": project.pk})
    assert response.status_code == 200
