"""A reward model checked on fresh rankings end to end, on a real Celery worker and tiny models: a tiny base →
a reward run on a few rankings → more tasks complete → the beat task starts a score run → its scores become
reward checks of exactly the fresh tasks → the API's figures are those checks'."""

from __future__ import annotations

import json

import pytest
from django.db import transaction
from django.utils import timezone

from annotation.models import Role
from tests.conftest import celery_worker_env, celery_worker_start, celery_worker_stop
from tests.training.conftest import FAST_WORKER_ENV, run_finished, wait_for
from tests.training.reward_checks import ranked_task
from training.models import LoopPolicy, ModelKind, ModelVersion, RewardCheck, RunKind, RunState, TrainingRun
from training.selectors.reward_agreement import wilson_interval
from training.services.model_versions import model_make_tiny, model_promote
from training.services.runs import run_trigger
from training.services.storage import data_path
from training.tasks import reward_checks_start_task

pytestmark = [pytest.mark.celery]

REWARD_QUICK = {"max_steps": 3, "per_device_batch_size": 2, "max_length": 64, "log_every": 1, "save_every": 50,
                "eval_fraction": 0.0}
ORDERS = [
    [[[0], [1], [2]], [[0], [2], [1]]],
    [[[2], [1], [0]], [[2], [0], [1]]],
    [[[1], [0], [2]], [[1], [0], [2]]],
    [[[0], [1, 2]], [[1], [0], [2]]],
]


@pytest.fixture
def checks_worker(data_root, transactional_db):
    """A worker on the default and gpu queues; a check starts once 3 fresh tasks wait."""
    worker = celery_worker_start(
        name="reward-checks", env=celery_worker_env(**FAST_WORKER_ENV, RLHF_REWARD_CHECK_MIN_TASKS="3")
    )
    try:
        yield worker
    finally:
        celery_worker_stop(worker)


def _scored_by_task(run: TrainingRun) -> dict[int, tuple[int, int]]:
    """(pairs, pairs the model ordered as the labeler) per task, read from the run's scores.jsonl."""
    figures: dict[int, list[int]] = {}
    for line in (data_path(run.run_dir) / "scores.jsonl").read_text().splitlines():
        row = json.loads(line)
        pair = figures.setdefault(row["task"], [0, 0])
        pair[0] += 1
        pair[1] += row["chosen_score"] > row["rejected_score"]
    return {task: (pairs, agreed) for task, (pairs, agreed) in figures.items()}


def test_a_promoted_reward_model_is_checked_on_the_tasks_completed_after_its_training(
    project, make_member, api_client_for, checks_worker
):
    project.responses_per_task, project.rankings_per_task = 3, 2
    project.save(update_fields=["responses_per_task", "rankings_per_task"])
    engineer_api = api_client_for(make_member(project, Role.MANAGER))
    assert run_finished(model_make_tiny(project=project, name="tiny-base")).state == RunState.SUCCEEDED
    base = ModelVersion.objects.get(project=project, name="tiny-base")

    # a reward model trained on the first tasks' rankings
    trained_on = [ranked_task(project, orders, ranked_at=timezone.now()) for orders in ORDERS[:3]]
    reward_run = run_finished(run_trigger(project=project, kind=RunKind.REWARD, input_model=base,
                                          config_overrides=REWARD_QUICK))
    assert reward_run.state == RunState.SUCCEEDED, reward_run.error
    reward = reward_run.output_model
    assert reward.kind == ModelKind.REWARD and reward.snapshot.row_count > 0
    LoopPolicy.objects.update_or_create(project=project, defaults={"config_templates": {"score": {"max_length": 64}}})
    model_promote(model=reward)  # the worker looks at once: every completed task is in its snapshot

    # more tasks complete after it was trained; the beat task finds them. In one transaction: the look
    # that promotion queued may reach the worker only now, and must see all of them or none (it starts a
    # check from 3 waiting tasks: seeing 3 of the 4 would check those alone)
    with transaction.atomic():
        fresh = [ranked_task(project, orders, ranked_at=timezone.now()) for orders in ORDERS]
    reward_checks_start_task.delay()
    check_run = wait_for(lambda: TrainingRun.objects.filter(project=project, kind=RunKind.SCORE).first(),
                         timeout=60, what="the check's score run")
    check_run = run_finished(check_run)
    assert check_run.state == RunState.SUCCEEDED, check_run.error
    assert check_run.input_model == reward and check_run.trigger == "loop"
    assert check_run.snapshot.options["task_ids"] == [task.pk for task in fresh]
    assert TrainingRun.objects.filter(project=project, kind=RunKind.SCORE).count() == 1

    # one check per fresh task, never one of the tasks it trained on, with the run's own figures
    scored = _scored_by_task(check_run)
    checks = {check.task_id: check for check in RewardCheck.objects.filter(model=reward)}
    assert set(checks) == {task.pk for task in fresh}
    assert not set(checks) & {task.pk for task in trained_on}
    for task in fresh:
        # every ranking's strict pairs: 3 each, one less for a ranking with a tie
        expected_pairs = sum(3 if len(order) == 3 else 2 for order in ORDERS[fresh.index(task)])
        assert (checks[task.pk].pairs, checks[task.pk].pairs_agreed) == scored[task.pk]
        assert checks[task.pk].pairs == expected_pairs
        assert checks[task.pk].task_completed_at == task.consensus_at and checks[task.pk].run == check_run

    pairs = sum(check.pairs for check in checks.values())
    agreed = sum(check.pairs_agreed for check in checks.values())
    low, high = wilson_interval(agreed, pairs)
    report = engineer_api.get(f"/api/projects/{project.pk}/reward-agreement/").json()
    (series,) = report["models"]
    assert series["model"]["id"] == reward.pk and series["is_current"] is True
    assert series["total"] == {"tasks": 4, "pairs": pairs, "pairs_agreed": agreed, "agreement": agreed / pairs,
                               "low": low, "high": high}
    assert report["pending_tasks"] == 0 and report["active_run"] is None
    assert report["ceiling"]["total"]["tasks"] == 7  # the trained-on tasks completed today too
    detail = engineer_api.get(f"/api/models/{reward.pk}/").json()["reward_agreement"]
    assert detail["total"] == series["total"] and detail["ceiling"]["tasks"] == 4

    # nothing left to check: the next tick starts nothing
    assert reward_checks_start_task.delay().get(timeout=60) == {str(project.pk): "nothing to check"}
    assert TrainingRun.objects.filter(project=project, kind=RunKind.SCORE).count() == 1
