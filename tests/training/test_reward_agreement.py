"""Reward model agreement with fresh human rankings: which tasks a reward model may be checked on (never
ones it trained on), the figures per model version and over time against hand-computed values (the
labelers' ceiling and the Wilson interval included), and the API that shows them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from annotation.models import Role
from config.exceptions import ApplicationError
from ranking.models import Ranking, TaskStatus
from tests.factories import MembershipFactory, UserFactory
from tests.training.factories import ModelVersionFactory
from tests.training.reward_checks import BEST_FIRST, check, make_current, ranked_task, reward_model
from training.models import ModelKind, SnapshotKind
from training.selectors.reward_agreement import (
    Agreement,
    ranking_pairs_agreement,
    reward_agreement_for_model,
    reward_agreement_report,
    reward_check_candidates,
    reward_model_labels_cutoff,
    wilson_interval,
)
from training.services.snapshots import snapshot_build, snapshot_request
from training.services.storage import data_path

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.get_current_timezone())


# ---- helpers ----


@pytest.fixture
def project(project):
    project.responses_per_task, project.rankings_per_task = 3, 2
    project.save(update_fields=["responses_per_task", "rankings_per_task"])
    return project


# ---- pure figures ----


def test_wilson_interval_matches_hand_computed_values():
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    low, high = wilson_interval(0, 5)  # not zero wide at 0 %: z²/n / (1 + z²/n)
    assert low == 0.0 and round(high, 4) == 0.4345
    low, high = wilson_interval(50, 50)
    assert round(low, 4) == 0.9287 and high == 1.0
    assert wilson_interval(0, 0) is None
    assert Agreement().share is None and Agreement().low is None


def test_labelers_agreement_counts_every_ordered_pair_of_rankings_and_leaves_ties_out():
    a, b, c = 1, 2, 3
    first, second, third = [[a], [b], [c]], [[b], [a], [c]], [[a], [b, c]]
    # 1→2: a>b no, a>c yes, b>c yes (2/3); 1→3: a>b, a>c yes, b>c tied in 3 (2/2)
    # 2→1: b>a no, b>c, a>c yes (2/3);     2→3: b>a no, b>c tied, a>c yes (1/2)
    # 3→1: a>b, a>c yes (2/2);             3→2: a>b no, a>c yes (1/2)
    assert ranking_pairs_agreement([first, second, third]) == (10, 14)
    assert ranking_pairs_agreement([first, first]) == (6, 6)
    assert ranking_pairs_agreement([first]) == (0, 0)
    assert ranking_pairs_agreement([[[a, b, c]], first]) == (0, 0)  # a ranking that ties all says nothing


# ---- which tasks a reward model is checked on ----


def test_only_completed_tasks_ranked_after_the_models_training_labels_are_candidates(project):
    model = reward_model(project, labels_until=T0)
    after = T0 + timedelta(hours=1)
    fresh = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=after)
    trained_on = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0 - timedelta(hours=1), completed_at=after)
    half = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=after)
    Ranking.objects.filter(pk=half.rankings.first().pk).update(created_at=T0)  # one ranking was in the snapshot
    still_open = ranked_task(project, [BEST_FIRST], ranked_at=after)
    gold = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=after, is_gold=True,
                       gold_order=[[1], [2], [3]])
    all_tied = ranked_task(project, [[[0, 1, 2]], [[0, 1, 2]]], ranked_at=after)
    checked = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=after)
    check(model, checked, pairs=6, agreed=6)
    checked_by_another = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=after)
    check(reward_model(project, labels_until=T0), checked_by_another, pairs=6, agreed=3)

    assert still_open.status == TaskStatus.OPEN and gold.status == TaskStatus.OPEN
    assert trained_on.status == TaskStatus.COMPLETE and all_tied.status == TaskStatus.COMPLETE
    assert list(reward_check_candidates(model=model)) == [fresh, checked_by_another]


def test_a_model_trained_from_another_reward_model_is_not_checked_on_what_its_parent_saw(project):
    parent = reward_model(project, labels_until=T0)
    child = reward_model(project, labels_until=T0 - timedelta(hours=2), parent=parent)
    seen_by_parent = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0 - timedelta(hours=1))
    fresh = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0 + timedelta(minutes=1))
    assert reward_model_labels_cutoff(model=child) == T0
    assert list(reward_check_candidates(model=child)) == [fresh]
    assert seen_by_parent not in reward_check_candidates(model=child)


def test_a_consensus_snapshot_counts_up_to_when_it_was_written_and_a_registered_model_up_to_its_registration(project):
    consensus = reward_model(project, labels_until=T0, pairs="consensus")
    assert reward_model_labels_cutoff(model=consensus) == T0 + timedelta(minutes=5)
    registered = ModelVersionFactory(project=project, kind=ModelKind.REWARD)
    assert reward_model_labels_cutoff(model=registered) == registered.created_at
    assert reward_model_labels_cutoff(model=ModelVersionFactory(project=project, kind=ModelKind.BASE)) is None


# ---- figures per model version and over time ----


def test_the_report_sums_each_model_per_day_beside_the_labelers_ceiling(project):
    day1, day2 = T0, T0 + timedelta(days=1)
    old = reward_model(project, labels_until=T0 - timedelta(days=5), name="reward-v1")
    new = reward_model(project, labels_until=T0 + timedelta(hours=1), name="reward-v2")
    make_current(new)
    # day 1: two labelers disagree on one pair of three (4 of 6 ordered comparisons agree)
    a = ranked_task(project, [BEST_FIRST, [[1], [0], [2]]], ranked_at=day1)
    # day 2: two labelers agree on everything (6 of 6); a third task ranked once never completes
    b = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=day2)
    ranked_task(project, [BEST_FIRST], ranked_at=day2)
    c = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=day2 + timedelta(hours=1))
    check(old, a, pairs=6, agreed=3, margin=0.2)
    check(old, b, pairs=6, agreed=6, margin=1.0)
    check(new, c, pairs=6, agreed=4, margin=-0.5)

    report = reward_agreement_report(project=project)
    assert [m.model.name for m in report.models] == ["reward-v1", "reward-v2"]
    v1, v2 = report.models
    assert not v1.is_current and v2.is_current
    assert [(p.start, p.tasks, p.pairs, p.pairs_agreed) for p in v1.points] == [
        (day1.date(), 1, 6, 3), (day2.date(), 1, 6, 6)]
    assert (v1.total.pairs, v1.total.pairs_agreed, v1.total.share) == (12, 9, 0.75)
    assert v1.mean_margin == pytest.approx((0.2 * 6 + 1.0 * 6) / 12)
    assert (v1.total.low, v1.total.high) == pytest.approx(wilson_interval(9, 12))
    assert [(p.start, p.pairs, p.pairs_agreed) for p in v2.points] == [(day2.date(), 6, 4)]
    # the ceiling: every completed task of each day, checked or not
    assert [(p.start, p.tasks, p.pairs, p.pairs_agreed) for p in report.ceiling_points] == [
        (day1.date(), 1, 6, 4), (day2.date(), 2, 12, 12)]
    assert (report.ceiling.pairs, report.ceiling.pairs_agreed) == (18, 16)
    assert report.current_model == new and report.active_run is None

    weekly = reward_agreement_report(project=project, bucket="week")
    monday = day1.date() - timedelta(days=day1.weekday())
    assert [(p.start, p.pairs, p.pairs_agreed) for p in weekly.models[0].points] == [(monday, 12, 9)]


def test_a_reward_model_figures_and_the_labelers_ceiling_on_the_same_tasks(project):
    model = reward_model(project, labels_until=T0)
    a = ranked_task(project, [BEST_FIRST, [[1], [0], [2]]], ranked_at=T0 + timedelta(hours=1))
    b = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0 + timedelta(hours=2))
    ranked_task(project, [BEST_FIRST, [[2], [1], [0]]], ranked_at=T0 + timedelta(hours=3))  # not checked
    check(model, a, pairs=6, agreed=5, margin=1.0)
    check(model, b, pairs=6, agreed=3, margin=0.0)
    figures = reward_agreement_for_model(model=model)
    assert (figures.total.tasks, figures.total.pairs, figures.total.pairs_agreed) == (2, 12, 8)
    assert figures.mean_margin == pytest.approx(0.5)
    assert (figures.ceiling.tasks, figures.ceiling.pairs, figures.ceiling.pairs_agreed) == (2, 12, 10)
    assert figures.first_task_completed_at == a.consensus_at and figures.last_task_completed_at == b.consensus_at
    assert reward_agreement_for_model(model=ModelVersionFactory(project=project, kind=ModelKind.SFT)) is None


# ---- the API ----


@pytest.fixture
def engineer(project):
    user = UserFactory()
    user.user_permissions.add(Permission.objects.get(codename="use_training_api"))
    MembershipFactory(project=project, user=user, role=Role.LABELER)
    return user


def test_the_reward_agreement_api_answers_series_per_model_and_the_ceiling(project, engineer, api_client_for):
    model = reward_model(project, labels_until=T0, name="reward-v1")
    make_current(model)
    task = ranked_task(project, [BEST_FIRST, [[1], [0], [2]]], ranked_at=T0 + timedelta(hours=1))
    check(model, task, pairs=6, agreed=3, margin=0.25)
    ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0 + timedelta(hours=2))  # waits for a check

    answer = api_client_for(engineer).get(f"/api/projects/{project.pk}/reward-agreement/")
    assert answer.status_code == 200, answer.json()
    body = answer.json()
    low, high = wilson_interval(3, 6)
    figures = {"tasks": 1, "pairs": 6, "pairs_agreed": 3, "agreement": 0.5, "low": low, "high": high}
    day = T0.date().isoformat()
    assert body == {
        "project": project.pk, "bucket": "day",
        "current_reward_model": {"id": model.pk, "name": "reward-v1", "kind": "reward"},
        "pending_tasks": 1, "check_starts_at": 20, "active_run": None,
        "models": [{"model": {"id": model.pk, "name": "reward-v1", "kind": "reward"}, "is_current": True,
                    "total": figures, "mean_margin": 0.25, "points": [{**figures, "start": day}]}],
        "ceiling": {
            "total": {**figures, "tasks": 2, "pairs": 12, "pairs_agreed": 10,
                      "agreement": pytest.approx(10 / 12), "low": pytest.approx(wilson_interval(10, 12)[0]),
                      "high": pytest.approx(wilson_interval(10, 12)[1])},
            "points": [{"start": day, "tasks": 2, "pairs": 12, "pairs_agreed": 10, "agreement": pytest.approx(10 / 12),
                        "low": pytest.approx(wilson_interval(10, 12)[0]),
                        "high": pytest.approx(wilson_interval(10, 12)[1])}],
        },
    }

    detail = api_client_for(engineer).get(f"/api/models/{model.pk}/").json()["reward_agreement"]
    assert detail["total"] == figures and detail["mean_margin"] == 0.25
    assert detail["ceiling"]["pairs"] == 6 and detail["ceiling"]["pairs_agreed"] == 4
    base = ModelVersionFactory(project=project, kind=ModelKind.BASE)
    assert api_client_for(engineer).get(f"/api/models/{base.pk}/").json()["reward_agreement"] is None


def test_the_reward_agreement_api_refuses_a_bad_bucket_and_hides_other_projects(
    project, engineer, api_client_for, make_member
):
    client = api_client_for(engineer)
    assert client.get(f"/api/projects/{project.pk}/reward-agreement/?bucket=month").status_code == 400
    empty = client.get(f"/api/projects/{project.pk}/reward-agreement/?bucket=week&days=30").json()
    assert empty["models"] == [] and empty["ceiling"]["points"] == [] and empty["current_reward_model"] is None
    labeler = make_member(project, Role.LABELER)
    assert api_client_for(labeler).get(f"/api/projects/{project.pk}/reward-agreement/").status_code == 404
    assert api_client_for(None).get(f"/api/projects/{project.pk}/reward-agreement/").status_code == 401


def test_checks_never_reach_a_training_snapshot(project, data_root):
    """The tasks a reward model was checked on train the next one like any other: checks only read."""
    model = reward_model(project, labels_until=T0)
    task = ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0 + timedelta(hours=1))
    check(model, task, pairs=6, agreed=6)
    snapshot = snapshot_build(snapshot=snapshot_request(project=project, kind=SnapshotKind.PREFERENCES))
    rows = [json.loads(line) for line in data_path(snapshot.file_path).read_text().splitlines()]
    assert len(rows) == 6 and all("task" not in row for row in rows)


def test_a_preferences_snapshot_of_chosen_tasks_names_each_pairs_task(project, data_root):
    first, second, third = (ranked_task(project, [BEST_FIRST, BEST_FIRST], ranked_at=T0) for _ in range(3))
    snapshot = snapshot_build(snapshot=snapshot_request(
        project=project, kind=SnapshotKind.PREFERENCES, options={"task_ids": [first.pk, third.pk]}))
    rows = [json.loads(line) for line in data_path(snapshot.file_path).read_text().splitlines()]
    assert [row["task"] for row in rows] == [first.pk] * 6 + [third.pk] * 6
    for bad in ([], [0], ["1"], [True], "1,2"):
        with pytest.raises(ApplicationError, match="options.task_ids"):
            snapshot_request(project=project, kind=SnapshotKind.PREFERENCES, options={"task_ids": bad})
