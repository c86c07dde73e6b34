"""Factories for ranking tests: tasks with K answers, rankings."""

import factory

from ranking.models import Ranking, RankingTask, Response
from tests.factories import ProjectFactory, UserFactory


class RankingTaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RankingTask
        skip_postgeneration_save = True

    project = factory.SubFactory(ProjectFactory)
    context = factory.Sequence(lambda n: [{"role": "user", "content": f"Question number {n}?"}])

    @factory.post_generation
    def answers(task, create, extracted, **kwargs):
        """RankingTaskFactory(answers=4) or answers=["text", …]; default K = the project's."""
        if not create:
            return
        if extracted is None:
            extracted = task.project.responses_per_task
        texts = [f"Answer {i + 1} to task {task.pk}" for i in range(extracted)] if isinstance(extracted, int) else extracted
        for position, text in enumerate(texts):
            Response.objects.create(task=task, content=text, generator="policy-v1", position=position)


class RankingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Ranking

    task = factory.SubFactory(RankingTaskFactory)
    labeler = factory.SubFactory(UserFactory)
    order = factory.LazyAttribute(lambda r: [[pk] for pk in r.task.responses.values_list("pk", flat=True)])


def response_ids(task) -> list[int]:
    """The task's answer ids in creation order (position)."""
    return list(task.responses.order_by("position").values_list("pk", flat=True))
