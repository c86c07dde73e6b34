"""Reward model checks: a score run of the current reward model starts once enough fresh tasks wait (and on
promotion), reads only those tasks, and its scores become one check per task, once, as it settles."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import transaction
from django.utils import timezone

from annotation.models import Role
from ranking.models import RankingTask, TaskStatus
from tests.factories import ProjectFactory
from tests.training.factories import DatasetSnapshotFactory, ModelVersionFactory, TrainingRunFactory
from tests.training.reward_checks import (
    BEST_FIRST,
    check,
    make_current,
    ranked_task,
    reward_model,
    score_command,  # noqa: F401  (a fixture)
)
from training.models import ModelKind, RewardCheck, RunKind, RunState, SnapshotKind, TrainingRun
from training.selectors.reward_agreement import reward_agreement_for_model, reward_check_candidates
from training.services.execution import Claim, run_settle
from training.services.model_versions import model_promote
from training.services.reward_checks import (
    reward_check_ingest_for_run,
    reward_check_start,
    reward_checks_start,
)
from training.services.snapshots import snapshot_build
from training.services.storage import data_path

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.get_current_timezone())


# ---- helpers ----


@pytest.fixture
def project(project):
    project.responses_per_task, project.rankings_per_task = 3, 2
    project.save(update_fields=["responses_per_task", "rankings_per_task"])
    return project


# ---- starting a check ----


@pytest.mark.usefixtures("score_command")
def test_a_check_starts_once_enough_tasks_wait_and_reads_only_those_tasks(project, data_root, settings):
    settings.RLHF_REWARD_CHECK_MIN_TASKS = 3
    model = reward_model(project, labels_until=T0)
    make_current(model)
    old = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0 - timedelta(hours=1))
    fresh = [ranked_task(project, [BEST_FIRST, [[2], [1], [0]]], ranked_at=T0 + timedelta(hours=1)) for _ in range(2)]
    assert reward_check_start(project=project) is None  # 2 of 3

    fresh.append(ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0 + timedelta(hours=2)))
    with transaction.atomic():
        run = reward_check_start(project=project)
    assert run is not None and run.kind == RunKind.SCORE and run.input_model == model
    assert run.config["pairs_file"] == "pairs.jsonl" and run.config["model_path"].endswith(model.storage_path)
    assert run.snapshot.options["task_ids"] == [task.pk for task in fresh]
    assert reward_check_start(project=project) is None  # one check at a time

    snapshot_build(snapshot=run.snapshot)
    rows = [json.loads(line) for line in data_path(run.snapshot.file_path).read_text().splitlines()]
    assert {row["task"] for row in rows} == {task.pk for task in fresh}
    assert old.pk not in {row["task"] for row in rows}
    assert len(rows) == 3 * 2 * 3  # three tasks, two rankings, three pairs each
    assert {row["group"] for row in rows} == {f"ranking-{r.pk}" for t in fresh for r in t.rankings.all()}


@pytest.mark.usefixtures("score_command")
def test_the_beat_task_starts_checks_only_where_a_current_reward_model_has_work(project, settings):
    settings.RLHF_REWARD_CHECK_MIN_TASKS = 1
    model = reward_model(project, labels_until=T0)
    ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0 + timedelta(hours=1))
    assert reward_checks_start() == {}  # no current reward model anywhere
    make_current(model)
    outcome = reward_checks_start()
    run = TrainingRun.objects.get(project=project, kind=RunKind.SCORE)
    assert outcome == {project.pk: f"score run {run.pk}"} and run.trigger == "loop"
    assert reward_checks_start(project_ids=[project.pk]) == {project.pk: "nothing to check"}


def test_promoting_a_reward_model_starts_a_check_after_commit(project, django_capture_on_commit_callbacks, monkeypatch):
    started = []
    monkeypatch.setattr("training.tasks.reward_checks_start_task.delay", started.append)
    model = reward_model(project, labels_until=T0)
    with django_capture_on_commit_callbacks(execute=True):
        model_promote(model=model)
    assert started == [project.pk]
    with django_capture_on_commit_callbacks(execute=True):
        model_promote(model=ModelVersionFactory(project=project, kind=ModelKind.SFT))
    assert started == [project.pk]  # a policy's promotion checks nothing


# ---- ingesting a score run's scores ----


def _score_run(project, model, tasks, data_root, rows: list[dict]) -> TrainingRun:
    snapshot = DatasetSnapshotFactory(project=project, kind=SnapshotKind.PREFERENCES,
                                      options={"pairs": "labeler", "include_all_bad": True,
                                               "task_ids": [task.pk for task in tasks]})
    run = TrainingRunFactory(project=project, kind=RunKind.SCORE, input_model=model, snapshot=snapshot,
                             state=RunState.RUNNING, config={"model_path": "x", "pairs_file": "pairs.jsonl"},
                             worker="w:1", attempt=1, heartbeat_at=timezone.now(), finished_at=None)
    run.run_dir = f"runs/{project.pk}/{run.pk}"
    run.save(update_fields=["run_dir"])
    folder = data_path(run.run_dir)
    folder.mkdir(parents=True)
    (folder / "scores.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return run


def _score(task, chosen: float, rejected: float, **extra) -> dict:
    return {"task": task.pk, "group": "ranking-1", "chosen_score": chosen, "rejected_score": rejected,
            "margin": chosen - rejected, "agrees": chosen > rejected, **extra}


def test_a_succeeded_score_run_records_one_check_per_task_once(project, data_root):
    model = reward_model(project, labels_until=T0)
    first, second = (ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0 + timedelta(hours=h)) for h in (1, 2))
    reopened = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0 + timedelta(hours=3))
    stranger = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0 + timedelta(hours=3))
    no_pairs = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0 + timedelta(hours=3))
    run = _score_run(project, model, [first, second, reopened, no_pairs], data_root, [
        _score(first, 1.0, 0.0), _score(first, 0.5, 1.5), _score(first, 2.0, 1.0),
        _score(second, -1.0, 1.0), _score(second, 0.0, 0.0),  # a tie is no agreement
        _score(reopened, 1.0, 0.0),
        _score(stranger, 1.0, 0.0),  # not a task of this check
        {"task": first.pk, "chosen_score": None, "rejected_score": 1.0},  # no score: not counted
    ])
    RankingTask.objects.filter(pk=reopened.pk).update(consensus_at=None, status=TaskStatus.OPEN)

    state = run_settle(claim=Claim(run_id=run.pk, attempt=1, worker="w:1"), exit_code=0,
                       result={"status": "succeeded", "metrics": {"pairwise_accuracy": 0.5, "pairs": 6}},
                       folder=data_path(run.run_dir))
    assert state == RunState.SUCCEEDED
    checks = {c.task_id: c for c in RewardCheck.objects.filter(model=model)}
    assert set(checks) == {first.pk, second.pk, no_pairs.pk}
    # a task the snapshot held no pair of is not asked for again, and counts nowhere
    assert (checks[no_pairs.pk].pairs, checks[no_pairs.pk].mean_margin) == (0, None)
    assert no_pairs not in reward_check_candidates(model=model)
    assert reward_agreement_for_model(model=model).total.tasks == 2
    assert (checks[first.pk].pairs, checks[first.pk].pairs_agreed) == (3, 2)
    assert checks[first.pk].mean_margin == pytest.approx((1.0 - 1.0 + 1.0) / 3)
    assert (checks[second.pk].pairs, checks[second.pk].pairs_agreed, checks[second.pk].mean_margin) == (2, 0, -1.0)
    assert checks[first.pk].task_completed_at == first.consensus_at and checks[first.pk].run == run
    assert not TrainingRun.objects.filter(pk=run.pk, output_model__isnull=False).exists()

    with transaction.atomic():  # settled again (it can't be: the claim is spent), still once
        reward_check_ingest_for_run(run=TrainingRun.objects.get(pk=run.pk), folder=data_path(run.run_dir))
    assert RewardCheck.objects.filter(model=model).count() == 3


def test_a_score_run_by_hand_on_a_whole_snapshot_records_no_check(project, data_root):
    model = reward_model(project, labels_until=T0)
    task = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0 + timedelta(hours=1))
    run = _score_run(project, model, [task], data_root, [_score(task, 1.0, 0.0)])
    run.snapshot.options = {"pairs": "labeler", "include_all_bad": True, "task_ids": None}
    run.snapshot.save(update_fields=["options"])
    with transaction.atomic():
        assert reward_check_ingest_for_run(run=run, folder=data_path(run.run_dir)) == 0
    assert not RewardCheck.objects.exists()


# ---- admin ----


def test_admin_shows_reward_checks_read_only_and_only_of_the_projects_a_staff_manager_manages(
    client, project, make_member
):
    other = ProjectFactory(name="theirs", responses_per_task=3, rankings_per_task=2)
    mine = check(reward_model(project, labels_until=T0, name="mine-reward"),
                 ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0 + timedelta(hours=1)), pairs=6, agreed=4)
    theirs = check(reward_model(other, labels_until=T0, name="theirs-reward"),
                   ranked_task(other, [BEST_FIRST, BEST_FIRST], ranked_at=T0 + timedelta(hours=1)), pairs=6, agreed=2)
    manager = make_member(project, Role.MANAGER)
    manager.is_staff = True
    manager.save()
    manager.user_permissions.add(*Permission.objects.filter(content_type__app_label="training"))
    client.force_login(manager)
    html = client.get("/admin/training/rewardcheck/").content.decode()
    assert f"/admin/training/rewardcheck/{mine.pk}/change/" in html and "mine-reward" in html
    assert f"/admin/training/rewardcheck/{theirs.pk}/change/" not in html and "theirs" not in html
    assert client.get("/admin/training/rewardcheck/add/").status_code == 403
    assert client.get(f"/admin/training/rewardcheck/{mine.pk}/change/").status_code == 200  # to look at
