"""Many labelers asking for the next prompt at the same instant, on PostgreSQL, each on its own connection."""

from collections import Counter

import pytest

from annotation.models import Dialogue, Role
from annotation.services.dialogues import prompt_lease_next
from tests.annotation.factories import PromptFactory
from tests.concurrency import run_at_once
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def ask_all_at_once(project, users, *, rounds: int = 1) -> list[tuple[str, int | None, bool]]:
    """Release one thread per labeler together; collect (username, prompt leased, newly created) of each ask."""

    def ask(user):
        outcomes = []
        for _ in range(rounds):
            result = prompt_lease_next(project=project, user=user)
            outcomes.append((user.username, result.dialogue.prompt_id if result else None, bool(result and result.created)))
        return outcomes

    return [outcome for outcomes in run_at_once(ask, users) for outcome in outcomes]


def test_simultaneous_requests_never_lease_a_prompt_beyond_its_target():
    project = ProjectFactory(demonstrations_per_prompt=2)
    prompts = [PromptFactory(project=project) for _ in range(3)]
    users = [UserFactory() for _ in range(12)]
    for user in users:
        MembershipFactory(project=project, user=user, role=Role.LABELER)

    results = ask_all_at_once(project, users)

    granted = Counter(prompt_id for _, prompt_id, _ in results if prompt_id is not None)
    assert sum(granted.values()) == 6  # every slot is used, none twice
    assert set(granted) == {p.id for p in prompts} and set(granted.values()) == {2}
    assert [r for r in results if r[1] is None].__len__() == 6  # the others were told "none left"
    per_prompt = Counter(Dialogue.objects.values_list("prompt_id", flat=True))
    assert max(per_prompt.values()) == 2


def test_one_labeler_clicking_many_times_at_once_holds_one_lease():
    project = ProjectFactory(demonstrations_per_prompt=1)
    for _ in range(5):
        PromptFactory(project=project)
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=Role.LABELER)

    # the same user in several threads (several tabs / double clicks)
    results = ask_all_at_once(project, [user] * 6)

    assert {prompt_id for _, prompt_id, _ in results} == {Dialogue.objects.get().prompt_id}
    assert sum(created for _, _, created in results) == 1
