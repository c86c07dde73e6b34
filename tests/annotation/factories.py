"""Factories for demonstrations: prompts, dialogues with turns, and quick helpers for the life cycle."""

import factory

from annotation.models import Dialogue, DialogueStatus, Prompt, Turn
from annotation.services.dialogues import TurnData, prompt_text_hash
from tests.factories import ProjectFactory, UserFactory


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prompt

    project = factory.SubFactory(ProjectFactory)
    text = factory.Sequence(lambda n: f"Explain idea number {n} simply.")
    text_hash = factory.LazyAttribute(lambda p: prompt_text_hash(p.text))


COMPLETE_TURNS = [
    TurnData(role="user", content="What is the capital of France?"),
    TurnData(role="assistant", content="Paris."),
]


class DialogueFactory(factory.django.DjangoModelFactory):
    """A dialogue with turns (``turns=[TurnData, …]``, a complete two-turn exchange by default)."""

    class Meta:
        model = Dialogue
        skip_postgeneration_save = True

    project = factory.SubFactory(ProjectFactory)
    author = factory.SubFactory(UserFactory)
    status = DialogueStatus.DRAFT

    @factory.post_generation
    def turns(dialogue, create, extracted, **kwargs):
        turns = COMPLETE_TURNS if extracted is None else extracted
        Turn.objects.bulk_create(
            Turn(dialogue=dialogue, position=i, role=t.role, content=t.content) for i, t in enumerate(turns)
        )
