"""Reviewers deciding on the same submitted dialogue at the same instant, on PostgreSQL, each on its own connection."""

import pytest

from annotation.models import Dialogue, DialogueStatus, Review, ReviewDecision, Role
from annotation.services.dialogues import TurnData, dialogue_create, dialogue_review, dialogue_submit
from config.exceptions import ConflictError
from tests.concurrency import run_at_once
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

TURNS = [TurnData(role="user", content="Name a prime."), TurnData(role="assistant", content="7")]


def submitted_dialogue(*, accepts_required: int) -> Dialogue:
    project = ProjectFactory(accepts_required=accepts_required)
    author = UserFactory()
    MembershipFactory(project=project, user=author, role=Role.LABELER)
    dialogue = dialogue_create(project=project, author=author, turns=TURNS)
    return dialogue_submit(dialogue=dialogue, author=author, expected_version=dialogue.version)


def reviewers_of(project, count: int) -> list:
    users = [UserFactory() for _ in range(count)]
    for user in users:
        MembershipFactory(project=project, user=user, role=Role.REVIEWER)
    return users


def accept_all_at_once(dialogue, reviewers) -> tuple[list[tuple[int, int]], list[int]]:
    """Release one thread per reviewer together; return (reviewer, review) recorded and the reviewers refused."""

    def accept(reviewer):
        try:
            review = dialogue_review(dialogue=dialogue, reviewer=reviewer, decision=ReviewDecision.ACCEPT)
        except ConflictError:
            return reviewer.pk, None
        return reviewer.pk, review.pk

    outcomes = run_at_once(accept, reviewers)  # any other error fails the test there
    recorded = [(reviewer, review) for reviewer, review in outcomes if review is not None]
    return recorded, [reviewer for reviewer, review in outcomes if review is None]


def test_reviewers_accepting_at_once_accept_the_dialogue_once_with_exactly_the_required_reviews():
    dialogue = submitted_dialogue(accepts_required=2)
    reviewers = reviewers_of(dialogue.project, 6)

    recorded, refused = accept_all_at_once(dialogue, reviewers)

    assert len(recorded) == 2 and len(refused) == 4  # the late ones are told it is no longer waiting
    stored = set(Review.objects.filter(dialogue=dialogue).values_list("reviewer_id", "pk"))
    assert stored == set(recorded)  # every acknowledged review is stored, none doubled, no other
    assert set(Review.objects.filter(dialogue=dialogue).values_list("round", "decision")) == {
        (dialogue.round, ReviewDecision.ACCEPT)
    }
    after = Dialogue.objects.get(pk=dialogue.pk)
    assert after.status == DialogueStatus.ACCEPTED and after.accepted_at is not None
    assert after.version == dialogue.version + 1  # settled once, not once per accepting review


def test_one_reviewer_clicking_accept_many_times_at_once_counts_once():
    dialogue = submitted_dialogue(accepts_required=2)
    [reviewer] = reviewers_of(dialogue.project, 1)

    recorded, refused = accept_all_at_once(dialogue, [reviewer] * 5)

    assert len(recorded) == 1 and len(refused) == 4  # "you already reviewed this submission"
    assert Review.objects.filter(dialogue=dialogue).count() == 1
    after = Dialogue.objects.get(pk=dialogue.pk)
    assert after.status == DialogueStatus.SUBMITTED and after.version == dialogue.version  # one accept of two
