"""Helpers for evaluation tests: an evaluation whose models have answered, and judgements made as labelers make them."""

from __future__ import annotations

from django.utils import timezone

from annotation.models import Role
from ranking.models import Ranking, RankingTask, TaskPurpose, TaskSource
from ranking.services.rankings import ranking_submit
from ranking.services.tasks import ResponseSpec, ranking_task_create
from tests.annotation.factories import PromptFactory
from tests.factories import MembershipFactory, UserFactory
from tests.training.factories import TrainingRunFactory
from training.models import Evaluation, EvaluationEntry, ModelVersion, RunKind, RunTrigger


def evaluation_answered(project, models: list[ModelVersion], *, prompts: int = 3,
                        trigger: str = RunTrigger.MANUAL) -> Evaluation:
    """An evaluation whose sample runs succeeded and whose tasks exist (one per held-out prompt), unjudged."""
    evaluation = Evaluation.objects.create(project=project, trigger=trigger, ingested_at=timezone.now(),
                                           tasks_created=prompts)
    for position, model in enumerate(models):
        run = TrainingRunFactory(project=project, kind=RunKind.SAMPLE, input_model=model,
                                 dedup_key=f"evaluation:{evaluation.pk}:{model.pk}")
        EvaluationEntry.objects.create(evaluation=evaluation, model=model, run=run, position=position)
    for index in range(prompts):
        prompt = PromptFactory(project=project, held_out=True)
        task = ranking_task_create(
            project=project, context=[], prompt=prompt, source=TaskSource.EVALUATION,
            responses=[ResponseSpec(f"Reply {position + 1} to prompt {index}: **{'ABCDEFGHI'[position]}**.", model.name)
                       for position, model in enumerate(models)],
        )
        RankingTask.objects.filter(pk=task.pk).update(purpose=TaskPurpose.EVALUATION)
        evaluation.prompts.add(prompt)
        evaluation.tasks.add(task)
    return evaluation


def answer_of(task: RankingTask, model: ModelVersion) -> int:
    return task.responses.get(generator=model.name).pk


def judge(task: RankingTask, *, winner: ModelVersion | None, labeler=None) -> Ranking:
    """A labeler of the project picks ``winner``'s answer (None: calls a tie), through ranking_submit."""
    if labeler is None:
        labeler = UserFactory()
        MembershipFactory(project=task.project, user=labeler, role=Role.LABELER)
    ids = list(task.responses.order_by("position").values_list("pk", flat=True))
    if winner is None:
        order = [ids]
    else:
        best = answer_of(task, winner)
        order = [[best], [pk for pk in ids if pk != best]]
    return ranking_submit(task=task, labeler=labeler, order=order).ranking


def judge_all(evaluation: Evaluation, verdicts: list[ModelVersion | None]) -> None:
    """Judge the evaluation's tasks in turn, one verdict each, cycling through its tasks."""
    tasks = list(evaluation.tasks.order_by("pk"))
    for index, winner in enumerate(verdicts):
        judge(tasks[index % len(tasks)], winner=winner)
