import pytest
from django.contrib.auth.models import Permission

from annotation.models import Role
from tests.factories import UserFactory


@pytest.fixture
def ml_engineer(db):
    """ml_engineer(project=None): a user with annotation.use_training_api, a labeler member of ``project`` if given."""

    def make(project=None):
        user = UserFactory()
        user.user_permissions.add(Permission.objects.get(codename="use_training_api"))
        if project is not None:
            from tests.factories import MembershipFactory

            MembershipFactory(project=project, user=user, role=Role.LABELER)
        return user

    return make


@pytest.fixture
def who(project, make_member, ml_engineer):
    """who(name) -> a user in that place relative to ``project`` (None for anonymous)."""

    def make(name: str):
        return {
            "anonymous": lambda: None,
            "outsider": lambda: UserFactory(),
            "labeler": lambda: make_member(project, Role.LABELER),
            "reviewer": lambda: make_member(project, Role.REVIEWER),
            "manager": lambda: make_member(project, Role.MANAGER),
            "ml_engineer": lambda: ml_engineer(project),
            "ml_engineer_outsider": lambda: ml_engineer(None),
        }[name]()

    return make
