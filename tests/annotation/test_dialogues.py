"""Services of demonstrations: turns rules, the life cycle, versions, reviews and prompt leases."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import TURN_MAX_CHARS, TURNS_MAX, Dialogue, DialogueStatus, Role
from annotation.services.dialogues import (
    TurnData,
    dialogue_create,
    dialogue_decide_as_manager,
    dialogue_discard,
    dialogue_review,
    dialogue_submit,
    dialogue_update,
    prompt_create,
    prompt_lease_next,
    turns_check_complete,
)
from config.exceptions import ApplicationError, ConflictError
from tests.annotation.factories import DialogueFactory, PromptFactory

pytestmark = pytest.mark.django_db

U, A, S = "user", "assistant", "system"


def turns(*pairs) -> list[TurnData]:
    return [TurnData(role=role, content=content) for role, content in pairs]


THREE_TURNS = turns((S, "Be brief."), (U, "Hi?"), (A, "Hello!"))


# --- turn rules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (turns((U, "Hi")), "The last turn must be the assistant's."),
        (turns((A, "Hello")), "turn 1 should be a user turn"),
        (turns((U, "a"), (U, "b"), (A, "c")), "turn 2 should be an assistant turn"),
        (turns((U, "Hi"), (A, "  ")), "turn 2 (assistant) is empty."),
        (turns((U, "Hi"), (S, "x"), (A, "y")), "only the first turn may be a system turn"),
        (turns((S, "only a system turn")), "Write at least one user turn"),
        (turns((U, "x" * (TURN_MAX_CHARS + 1)), (A, "y")), "a turn has at most 8,000"),
        ([TurnData(U, "q"), TurnData(A, "a")] * (TURNS_MAX // 2 + 1), f"at most {TURNS_MAX} turns"),
    ],
)
def test_incomplete_or_malformed_dialogues_cannot_be_submitted(given, message):
    with pytest.raises(ApplicationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        turns_check_complete(turns=given)


def test_a_system_turn_then_alternating_turns_ending_with_the_assistant_is_complete():
    turns_check_complete(turns=THREE_TURNS)
    turns_check_complete(turns=turns((U, "a"), (A, "b"), (U, "c"), (A, "d")))


# --- life cycle ----------------------------------------------------------------------------------------


def test_life_cycle_draft_update_submit_two_accepts(project, make_member):
    project.accepts_required = 2
    project.save()
    author = make_member(project)
    first, second = make_member(project, Role.REVIEWER), make_member(project, Role.MANAGER)

    dialogue = dialogue_create(project=project, author=author, turns=turns((U, "Hi?")))
    assert (dialogue.status, dialogue.version) == (DialogueStatus.DRAFT, 1)
    dialogue = dialogue_update(dialogue=dialogue, author=author, turns=THREE_TURNS, expected_version=1)
    assert dialogue.version == 2
    assert [(t.role, t.content) for t in dialogue.turns.all()] == [(t.role, t.content) for t in THREE_TURNS]

    dialogue = dialogue_submit(dialogue=dialogue, author=author, expected_version=2)
    assert (dialogue.status, dialogue.round) == (DialogueStatus.SUBMITTED, 1)
    assert dialogue.submitted_at is not None

    dialogue_review(dialogue=dialogue, reviewer=first, decision="accept")
    dialogue.refresh_from_db()
    assert dialogue.status == DialogueStatus.SUBMITTED  # one of two accepts
    dialogue_review(dialogue=dialogue, reviewer=second, decision="accept", comment="Nice")
    dialogue.refresh_from_db()
    assert dialogue.status == DialogueStatus.ACCEPTED and dialogue.accepted_at is not None


def test_rejected_dialogue_is_revised_and_resubmitted_for_a_fresh_round(project, make_member):
    author, reviewer = make_member(project), make_member(project, Role.REVIEWER)
    dialogue = DialogueFactory(project=project, author=author)
    dialogue = dialogue_submit(dialogue=dialogue, author=author)
    dialogue_review(dialogue=dialogue, reviewer=reviewer, decision="reject", comment="Answer is too short.")
    dialogue.refresh_from_db()
    assert dialogue.status == DialogueStatus.REJECTED

    dialogue = dialogue_update(
        dialogue=dialogue,
        author=author,
        turns=turns((U, "What is the capital of France?"), (A, "Paris is the capital of France.")),
        expected_version=dialogue.version,
    )
    assert dialogue.status == DialogueStatus.REVISED
    dialogue = dialogue_submit(dialogue=dialogue, author=author)
    assert (dialogue.status, dialogue.round) == (DialogueStatus.SUBMITTED, 2)
    # the same reviewer may review the new submission
    dialogue_review(dialogue=dialogue, reviewer=reviewer, decision="accept")
    dialogue.refresh_from_db()
    assert dialogue.status == DialogueStatus.ACCEPTED


def test_a_stale_save_is_refused_and_nothing_is_overwritten(project, make_member):
    author = make_member(project)
    dialogue = dialogue_create(project=project, author=author, turns=turns((U, "v1")))
    dialogue_update(dialogue=dialogue, author=author, turns=turns((U, "from tab A")), expected_version=1)
    with pytest.raises(ConflictError, match="changed elsewhere") as refused:
        dialogue_update(dialogue=dialogue, author=author, turns=turns((U, "from tab B")), expected_version=1)
    assert refused.value.extra == {"current_version": 2}
    assert [t.content for t in Dialogue.objects.get(pk=dialogue.pk).turns.all()] == ["from tab A"]


def test_nobody_reviews_their_own_work_and_a_rejection_needs_a_comment(project, make_member):
    manager = make_member(project, Role.MANAGER)
    dialogue = dialogue_submit(dialogue=DialogueFactory(project=project, author=manager), author=manager)
    with pytest.raises(ApplicationError, match="your own"):
        dialogue_review(dialogue=dialogue, reviewer=manager, decision="accept")
    reviewer = make_member(project, Role.REVIEWER)
    with pytest.raises(ApplicationError, match="Say why"):
        dialogue_review(dialogue=dialogue, reviewer=reviewer, decision="reject", comment="  ")
    labeler = make_member(project)
    with pytest.raises(ApplicationError, match="reviewers and managers"):
        dialogue_review(dialogue=dialogue, reviewer=labeler, decision="accept")


def test_a_reviewer_reviews_a_submission_once(project, make_member):
    project.accepts_required = 2
    project.save()
    author, reviewer = make_member(project), make_member(project, Role.REVIEWER)
    dialogue = dialogue_submit(dialogue=DialogueFactory(project=project, author=author), author=author)
    dialogue_review(dialogue=dialogue, reviewer=reviewer, decision="accept")
    with pytest.raises(ConflictError, match="already reviewed"):
        dialogue_review(dialogue=dialogue, reviewer=reviewer, decision="accept")


def test_submitted_and_accepted_dialogues_are_no_longer_editable(project, make_member):
    author = make_member(project)
    dialogue = dialogue_submit(dialogue=DialogueFactory(project=project, author=author), author=author)
    with pytest.raises(ConflictError, match="can no longer be edited"):
        dialogue_update(
            dialogue=dialogue, author=author, turns=THREE_TURNS, expected_version=dialogue.version
        )
    with pytest.raises(ConflictError, match="already submitted"):
        dialogue_submit(dialogue=dialogue, author=author)
    with pytest.raises(ConflictError):
        dialogue_discard(dialogue=dialogue, author=author)


def test_manager_bulk_decision_settles_at_once_but_never_their_own(project, make_member):
    project.accepts_required = 3
    project.save()
    manager, author = make_member(project, Role.MANAGER), make_member(project)
    theirs = dialogue_submit(dialogue=DialogueFactory(project=project, author=author), author=author)
    dialogue_decide_as_manager(dialogue=theirs, manager=manager, decision="accept", comment="bulk")
    theirs.refresh_from_db()
    assert theirs.status == DialogueStatus.ACCEPTED
    own = dialogue_submit(dialogue=DialogueFactory(project=project, author=manager), author=manager)
    with pytest.raises(ApplicationError, match="your own"):
        dialogue_decide_as_manager(dialogue=own, manager=manager, decision="accept", comment="bulk")


def test_prompt_text_is_unique_per_project_whitespace_aside(project, make_member):
    user = make_member(project)
    prompt_create(project=project, text="Tell me  about cats.", created_by=user)
    with pytest.raises(ApplicationError, match="already in the project"):
        prompt_create(project=project, text="  Tell me about\ncats. ", created_by=user)
    other = PromptFactory(text="Tell me about cats.")  # another project may hold the same text
    assert other.project_id != project.pk


# --- prompt queue and leases ------------------------------------------------------------------------------


def test_next_prompt_leases_a_draft_that_starts_with_the_prompt(project, make_member):
    labeler = make_member(project)
    prompt = PromptFactory(project=project, text="Why is the sky blue?")
    result = prompt_lease_next(project=project, user=labeler)
    assert result.created and result.dialogue.prompt == prompt
    assert [(t.role, t.content) for t in result.dialogue.turns.all()] == [
        (U, "Why is the sky blue?"),
        (A, ""),
    ]
    assert result.dialogue.lease_expires_at > timezone.now() + timedelta(minutes=project.lease_minutes - 1)
    # asking again gives the same draft back rather than a second prompt
    again = prompt_lease_next(project=project, user=labeler)
    assert not again.created and again.dialogue == result.dialogue


def test_a_prompt_is_served_until_it_has_its_target_and_never_twice_to_one_labeler(project, make_member):
    project.demonstrations_per_prompt = 2
    project.save()
    prompt = PromptFactory(project=project)
    first, second, third = (make_member(project) for _ in range(3))
    assert prompt_lease_next(project=project, user=first).dialogue.prompt == prompt
    assert prompt_lease_next(project=project, user=second).dialogue.prompt == prompt
    assert prompt_lease_next(project=project, user=third) is None


def test_an_expired_lease_frees_the_prompt_and_a_submission_keeps_it(project, make_member):
    prompt = PromptFactory(project=project)
    first, second, third = (make_member(project) for _ in range(3))
    abandoned = prompt_lease_next(project=project, user=first).dialogue
    assert prompt_lease_next(project=project, user=second) is None
    Dialogue.objects.filter(pk=abandoned.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    taken = prompt_lease_next(project=project, user=second).dialogue
    assert taken.prompt == prompt
    taken = dialogue_update(
        dialogue=taken, author=second, turns=turns((U, prompt.text), (A, "An answer.")), expected_version=1
    )
    dialogue_submit(dialogue=taken, author=second)
    assert prompt_lease_next(project=project, user=third) is None


def test_a_queue_draft_must_keep_its_prompt_as_first_user_turn(project, make_member):
    labeler = make_member(project)
    PromptFactory(project=project, text="Name three rivers.")
    draft = prompt_lease_next(project=project, user=labeler).dialogue
    draft = dialogue_update(
        dialogue=draft, author=labeler, turns=turns((U, "Something else"), (A, "Answer")), expected_version=1
    )
    with pytest.raises(ApplicationError, match="must be the prompt"):
        dialogue_submit(dialogue=draft, author=labeler)


def test_saving_renews_a_lease_running_out(project, make_member):
    labeler = make_member(project)
    PromptFactory(project=project)
    draft = prompt_lease_next(project=project, user=labeler).dialogue
    soon = timezone.now() + timedelta(minutes=1)
    Dialogue.objects.filter(pk=draft.pk).update(lease_expires_at=soon)
    draft = dialogue_update(
        dialogue=draft, author=labeler, turns=turns((U, draft.prompt.text)), expected_version=1
    )
    assert draft.lease_expires_at > soon + timedelta(minutes=project.lease_minutes - 2)


def test_discarding_a_queue_draft_gives_the_prompt_back(project, make_member):
    first, second = make_member(project), make_member(project)
    prompt = PromptFactory(project=project)
    draft = prompt_lease_next(project=project, user=first).dialogue
    dialogue_discard(dialogue=draft, author=first)
    assert prompt_lease_next(project=project, user=second).dialogue.prompt == prompt


def test_inactive_prompts_and_archived_projects_serve_nothing(project, make_member):
    labeler = make_member(project)
    PromptFactory(project=project, is_active=False)
    assert prompt_lease_next(project=project, user=labeler) is None
    project.is_archived = True
    project.save()
    with pytest.raises(ApplicationError, match="archived"):
        prompt_lease_next(project=project, user=labeler)
