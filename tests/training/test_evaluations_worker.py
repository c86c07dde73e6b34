"""An evaluation end to end on a real Celery worker: two tiny models answer held-out prompts, labelers judge the
answers through the API, and the results come back with their intervals."""

import pytest
from django.contrib.auth.models import Permission

from annotation.models import Role
from tests.annotation.factories import PromptFactory
from tests.factories import MembershipFactory, UserFactory
from tests.training.conftest import run_finished, wait_for
from training.models import Evaluation, ModelVersion, RunState
from training.services.evaluations import evaluation_start
from training.services.model_versions import model_make_tiny

pytestmark = [pytest.mark.celery]


def test_two_tiny_models_are_judged_by_people_on_held_out_prompts(project, gpu_worker, api_client_for):
    project.rankings_per_task = 1
    project.save()
    for name, seed in (("tiny-a", 0), ("tiny-b", 1)):
        run = run_finished(model_make_tiny(project=project, name=name, config={"seed": seed}))
        assert run.state == RunState.SUCCEEDED, run.error
    tiny_a, tiny_b = ModelVersion.objects.get(name="tiny-a"), ModelVersion.objects.get(name="tiny-b")
    prompts = PromptFactory.create_batch(5, project=project)

    evaluation = evaluation_start(
        project=project, models=[tiny_b, tiny_a], num_prompts=5,
        config_overrides={"max_new_tokens": 8, "temperature": 1.0},
    )
    for entry in evaluation.entries.all():
        run = run_finished(entry.run)
        assert run.state == RunState.SUCCEEDED, run.error
    evaluation = wait_for(lambda: Evaluation.objects.filter(pk=evaluation.pk, ingested_at__isnull=False).first(),
                          timeout=60, what="the evaluation's tasks")
    assert evaluation.error == "", evaluation.error
    assert evaluation.tasks_created >= 1 and evaluation.tasks_created + evaluation.prompts_skipped == 5
    assert {prompt.pk for prompt in evaluation.prompts.all()} == {prompt.pk for prompt in prompts}
    for task in evaluation.tasks.all():
        assert sorted(task.responses.values_list("generator", flat=True)) == ["tiny-a", "tiny-b"]

    # two labelers judge through the API: one always prefers tiny-b's answer, the other calls ties
    engineer = UserFactory()
    engineer.user_permissions.add(Permission.objects.get(codename="use_training_api"))
    MembershipFactory(project=project, user=engineer, role=Role.LABELER)
    labeler = UserFactory()
    MembershipFactory(project=project, user=labeler, role=Role.LABELER)
    client = api_client_for(labeler)
    judged = 0
    while (response := client.post(f"/api/ranking-tasks/next/?project={project.pk}")).status_code == 200:
        task = response.json()
        assert task["purpose"] == "evaluation" and "generator" not in task["responses"][0]
        ids = [answer["id"] for answer in task["responses"]]
        tiny_b_answer = evaluation.tasks.get(pk=task["id"]).responses.get(generator="tiny-b").pk
        order = [[tiny_b_answer], [pk for pk in ids if pk != tiny_b_answer]] if judged % 2 == 0 else [ids]
        submitted = client.post(f"/api/ranking-tasks/{task['id']}/rankings/", {"order": order}, format="json")
        assert submitted.status_code == 201, submitted.content
        judged += 1
    assert judged == evaluation.tasks_created

    detail = api_client_for(engineer).get(f"/api/evaluations/{evaluation.pk}/").json()
    assert detail["state"] == "complete" and detail["judgements"] == judged
    [pair] = detail["results"]["pairs"]
    wins, ties = (judged + 1) // 2, judged // 2
    assert (pair["model_a"]["name"], pair["wins_a"], pair["wins_b"], pair["ties"]) == ("tiny-b", wins, 0, ties)
    assert pair["win_rate"] == pytest.approx((wins + ties / 2) / judged)
    assert pair["ci_low"] < pair["win_rate"] <= pair["ci_high"]
    assert detail["results"]["ratings"][0]["model"]["name"] == "tiny-b"
