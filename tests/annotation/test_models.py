import pytest
from django.core.exceptions import ValidationError

from tests.annotation.factories import DialogueFactory, PromptFactory
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def test_a_dialogue_cannot_point_at_a_prompt_of_another_project():
    mine, theirs = ProjectFactory(), ProjectFactory()
    dialogue = DialogueFactory(project=mine)
    dialogue.prompt = PromptFactory(project=theirs)
    with pytest.raises(ValidationError) as error:
        dialogue.full_clean()
    assert error.value.message_dict["prompt"] == ["This prompt belongs to another project."]


def test_a_dialogue_may_point_at_a_prompt_of_its_own_project():
    project = ProjectFactory()
    dialogue = DialogueFactory(project=project)
    dialogue.prompt = PromptFactory(project=project)
    dialogue.full_clean()
