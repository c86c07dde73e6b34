"""Each prompt counts its submitted and accepted demonstrations on its row; `next-prompt` walks only the rest."""

import importlib

import pytest
from django.apps import apps

from annotation.models import Prompt, Role
from annotation.services.dialogues import (
    TurnData,
    dialogue_review,
    dialogue_submit,
    dialogue_update,
    prompt_lease_next,
)
from tests.annotation.factories import PromptFactory

pytestmark = pytest.mark.django_db


def _write_and_submit(project, user):
    draft = prompt_lease_next(project=project, user=user).dialogue
    turns = [TurnData("user", draft.prompt.text), TurnData("assistant", "An answer.")]
    draft = dialogue_update(dialogue=draft, author=user, turns=turns, expected_version=draft.version)
    return dialogue_submit(dialogue=draft, author=user)


def _count(prompt) -> int:
    prompt.refresh_from_db()
    return prompt.demonstrations_count


def test_submit_counts_and_a_rejection_gives_the_prompt_back_to_the_queue(project, make_member):
    prompt = PromptFactory(project=project)
    author, other = make_member(project), make_member(project)
    submitted = _write_and_submit(project, author)
    assert _count(prompt) == 1
    assert prompt_lease_next(project=project, user=other) is None  # it has its demonstration
    dialogue_review(dialogue=submitted, reviewer=make_member(project, Role.REVIEWER), decision="reject",
                    comment="Too short.")
    assert _count(prompt) == 0
    assert prompt_lease_next(project=project, user=other).dialogue.prompt == prompt


def test_nearest_to_its_demonstrations_first_then_oldest(project, make_member):
    project.demonstrations_per_prompt = 2
    project.save()
    older, newer = PromptFactory(project=project), PromptFactory(project=project)
    first = make_member(project)
    assert prompt_lease_next(project=project, user=first).dialogue.prompt == older
    Prompt.objects.filter(pk=newer.pk).update(demonstrations_count=1)  # as if one was submitted
    assert prompt_lease_next(project=project, user=make_member(project)).dialogue.prompt == newer


def test_a_count_left_behind_never_serves_a_prompt_beyond_its_target(project, make_member):
    prompt = PromptFactory(project=project)
    _write_and_submit(project, make_member(project))
    Prompt.objects.filter(pk=prompt.pk).update(demonstrations_count=0)  # a path that forgot to count
    assert prompt_lease_next(project=project, user=make_member(project)) is None  # the walk's probe counts the rows


def test_the_migration_fills_the_counts_from_the_dialogues(project, make_member):
    done, untouched = PromptFactory(project=project), PromptFactory(project=project)
    _write_and_submit(project, make_member(project))
    Prompt.objects.update(demonstrations_count=0)
    migration = importlib.import_module("annotation.migrations.0007_prompt_demonstrations_count")
    migration.counts_fill(apps, None)
    assert (_count(done), _count(untouched)) == (1, 0)
