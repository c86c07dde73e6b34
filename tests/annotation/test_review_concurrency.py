"""Reviewers deciding on the same submitted dialogue at the same instant, on PostgreSQL, each on its own connection."""

import threading

import pytest
from django.db import connection

from annotation.dialogue_services import TurnData, dialogue_create, dialogue_review, dialogue_submit
from annotation.models import Dialogue, DialogueStatus, Review, ReviewDecision, Role
from config.exceptions import ConflictError
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


def accept_all_at_once(dialogue, reviewers) -> tuple[list[tuple[int, int]], list[int], list[str]]:
    """Release one thread per reviewer together; return (reviewer, review) recorded, reviewers refused, other errors."""
    barrier = threading.Barrier(len(reviewers))
    recorded, refused, errors = [], [], []
    lock = threading.Lock()

    def worker(reviewer):
        try:
            barrier.wait(timeout=30)
            try:
                review = dialogue_review(dialogue=dialogue, reviewer=reviewer, decision=ReviewDecision.ACCEPT)
            except ConflictError:
                with lock:
                    refused.append(reviewer.pk)
            else:
                with lock:
                    recorded.append((reviewer.pk, review.pk))
        except Exception as exc:  # noqa: BLE001 - surfaced by the caller's assertion
            errors.append(repr(exc))
        finally:
            connection.close()  # each thread opened its own connection

    threads = [threading.Thread(target=worker, args=(reviewer,)) for reviewer in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return recorded, refused, errors


def test_reviewers_accepting_at_once_accept_the_dialogue_once_with_exactly_the_required_reviews():
    dialogue = submitted_dialogue(accepts_required=2)
    reviewers = reviewers_of(dialogue.project, 6)

    recorded, refused, errors = accept_all_at_once(dialogue, reviewers)

    assert errors == []
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

    recorded, refused, errors = accept_all_at_once(dialogue, [reviewer] * 5)

    assert errors == []
    assert len(recorded) == 1 and len(refused) == 4  # "you already reviewed this submission"
    assert Review.objects.filter(dialogue=dialogue).count() == 1
    after = Dialogue.objects.get(pk=dialogue.pk)
    assert after.status == DialogueStatus.SUBMITTED and after.version == dialogue.version  # one accept of two
