import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from annotation.models import Membership, Project

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent_and_uses_demo_password(monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "a-demo-password")
    call_command("seed_demo")
    call_command("seed_demo")
    project = Project.objects.get(slug="demo")
    assert project.name == "Demo assistant"
    assert Project.objects.filter(slug="demo").count() == 1
    assert project.guidelines.count() == 1
    assert project.prompts.count() == 5  # the labelers' queue has work on a first look
    roles = dict(Membership.objects.filter(project=project).values_list("user__username", "role"))
    assert roles == {
        "manager": "manager", "reviewer": "reviewer", "labeler1": "labeler", "labeler2": "labeler",
        "labeler3": "labeler", "engineer": "labeler",
    }
    User = get_user_model()
    assert User.objects.get(username="admin").is_superuser
    engineer = authenticate(username="engineer", password="a-demo-password")
    assert engineer is not None and engineer.has_perm("annotation.use_training_api")
    assert not User.objects.get(username="labeler1").has_perm("annotation.use_training_api")
