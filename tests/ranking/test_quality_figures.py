"""The running quality figures: kept by the services as rankings arrive, equal to a recount, and cheap to read.

The quality page, "My stats" and the project page read a few rows; these tests pin that the rows
say what a recount from the rankings says after every kind of change, and that each page runs a
fixed number of queries whatever the number of tasks, rankings and labelers (no N+1 coming back).
"""

import io
import json
import random

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation.models import Role
from ranking.models import LabelerStats, ProjectRankingStats, RankingTask
from ranking.selectors import labeler_stats, project_ranking_quality
from ranking.services.imports import ranking_tasks_import
from ranking.services.leasing import ranking_task_skip
from ranking.services.rankings import ranking_submit
from ranking.services.stats import median_from_histogram, ranking_project_stats_rebuild
from ranking.services.tasks import (
    ranking_task_disable,
    ranking_task_gold_set,
    ranking_tasks_consensus_recompute,
)
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = pytest.mark.django_db


def _rank(task, labeler, order, **extra):
    return ranking_submit(task=task, labeler=labeler, order=order, **extra)


def test_a_task_with_two_rankings_is_on_the_quality_page_before_it_is_complete(client, project, make_member):
    # the bug: with 3 rankings per task, a task two labelers ranked had no agreement yet, so the
    # page said "No task has two rankings yet" while the API showed the task with two rankings
    project.rankings_per_task = 3
    project.save()
    task = RankingTaskFactory(project=project, answers=3)
    a, b, c = response_ids(task)
    _rank(task, make_member(project), [[a], [b], [c]])
    _rank(task, make_member(project), [[c], [b], [a]])
    task.refresh_from_db()
    assert task.status == "open" and task.consensus_order is None and task.agreement == -1.0
    quality = project_ranking_quality(project=project)
    assert [(t.pk, t.ranking_count) for t in quality.disagreements] == [(task.pk, 2)]
    assert quality.mean_task_agreement == -1.0
    client.force_login(make_member(project, Role.MANAGER))
    html = client.get(f"/projects/{project.pk}/ranking/quality/").content.decode()
    assert "No task has two rankings yet" not in html
    assert f'<td data-cell="task" data-label="Task">{task.pk}</td>' in html
    assert '<td data-cell="agreement" data-label="τ-b">-1.00</td>' in html
    assert '<td data-cell="rankings" data-label="Rankings">2</td>' in html


def test_a_single_ranking_gives_no_agreement_and_the_page_says_so(client, project, make_member):
    project.rankings_per_task = 3
    project.save()
    task = RankingTaskFactory(project=project, answers=2)
    a, b = response_ids(task)
    _rank(task, make_member(project), [[a], [b]])
    task.refresh_from_db()
    assert task.agreement is None
    client.force_login(make_member(project, Role.MANAGER))
    assert "No task has two rankings yet" in client.get(f"/projects/{project.pk}/ranking/quality/").content.decode()


def _figures_snapshot(project):
    rows = {
        row.labeler_id: (row.ranked, row.ranked_today, row.skipped, row.all_bad, round(row.agreement_sum, 9),
                         row.agreement_tasks, row.gold_hits, row.gold_pairs, row.gold_tasks, row.times, row.flags)
        for row in LabelerStats.objects.filter(project=project)
        if row.ranked or row.skipped
    }
    totals = ProjectRankingStats.objects.filter(project=project).first()
    coincidences = {k: round(v, 9) for k, v in totals.coincidences.items() if round(v, 9)} if totals else {}
    return rows, (totals.rankings + totals.imported_rankings if totals else 0), coincidences


def test_the_running_figures_equal_a_recount_after_submits_gold_disable_and_recompute(project, make_member):
    """Every service that changes what the figures count keeps them equal to a recount from scratch."""
    rng = random.Random(7)
    project.rankings_per_task = 3
    project.save()
    labelers = [make_member(project, username=f"l{i}") for i in range(5)]
    tasks = [RankingTaskFactory(project=project, answers=rng.choice([2, 3, 4])) for _ in range(12)]
    for task in tasks:
        for labeler in rng.sample(labelers, rng.choice([1, 2, 3])):
            ids = response_ids(task)
            rng.shuffle(ids)
            groups = [ids[:1], ids[1:]] if rng.random() < 0.3 else [[i] for i in ids]
            _rank(task, labeler, groups, time_spent_ms=rng.randint(1, 90) * 1000 + rng.randint(0, 999),
                  all_bad=rng.random() < 0.2, flags={str(ids[0]): ["harmful"]} if rng.random() < 0.3 else None)
    gold = tasks[0]
    ranking_task_gold_set(task=gold, order=[[i] for i in response_ids(gold)])
    ranking_task_disable(task=tasks[1])
    ranking_task_disable(task=tasks[2])
    ranking_task_disable(task=tasks[2], disabled=False)
    ranking_task_skip(task=tasks[3], labeler=labelers[0])
    ranking_task_skip(task=tasks[3], labeler=labelers[0])  # twice: counted once
    project.rankings_per_task = 2  # a rule change, then the admin's recompute
    project.save()
    ranking_tasks_consensus_recompute(task_ids=[task.pk for task in tasks])
    ranking_task_gold_set(task=gold, order=None)

    kept = _figures_snapshot(project)
    ranking_project_stats_rebuild(project=project)
    assert _figures_snapshot(project) == kept
    assert kept[1] == sum(task.rankings.count() for task in tasks if task.pk != tasks[1].pk)
    assert LabelerStats.objects.get(project=project, labeler=labelers[0]).skipped == 1


def test_an_import_counts_its_preferences_once_and_a_recount_agrees(project, make_member):
    project.rankings_per_task = 2
    project.save()
    lines = [{"chosen": f"\n\nHuman: q{i}\n\nAssistant: good", "rejected": f"\n\nHuman: q{i}\n\nAssistant: bad"}
             for i in range(2)]
    file = io.BytesIO("".join(json.dumps(line) + "\n" for line in lines).encode())
    assert ranking_tasks_import(project=project, file=file, format="hh-rlhf", created_by=None).rankings_imported == 2
    assert project_ranking_quality(project=project).rankings == 2
    task = RankingTask.objects.filter(project=project).order_by("pk").first()
    good, bad = response_ids(task)
    labeler = make_member(project)
    _rank(task, labeler, [[bad], [good]])  # against the imported preference
    quality = project_ranking_quality(project=project)
    assert quality.rankings == 3 and quality.alpha is not None
    assert labeler_stats(project=project, labeler=labeler).agreement == -1.0
    kept = _figures_snapshot(project)
    ranking_project_stats_rebuild(project=project)
    assert _figures_snapshot(project) == kept


def test_disabling_a_task_takes_its_rankings_out_of_the_figures_and_enabling_puts_them_back(project, make_member):
    project.rankings_per_task = 2
    project.save()
    first, second = make_member(project), make_member(project)
    task = RankingTaskFactory(project=project, answers=2)
    a, b = response_ids(task)
    _rank(task, first, [[a], [b]], time_spent_ms=4000)
    _rank(task, second, [[b], [a]], time_spent_ms=6000)
    assert labeler_stats(project=project, labeler=first).agreement == -1.0
    ranking_task_disable(task=task)
    stats = labeler_stats(project=project, labeler=first)
    assert stats.ranked == 0 and stats.agreement is None and stats.median_time_ms is None
    assert project_ranking_quality(project=project).rankings == 0
    ranking_task_disable(task=task, disabled=False)
    stats = labeler_stats(project=project, labeler=first)
    assert stats.ranked == 1 and stats.agreement == -1.0 and stats.median_time_ms == 4000
    assert project_ranking_quality(project=project).rankings == 2


def test_the_median_time_is_read_from_tenths_of_a_second():
    assert median_from_histogram({}) is None
    assert median_from_histogram({"42": 1}) == 4200
    assert median_from_histogram({"10": 2, "30": 1}) == 1000
    assert median_from_histogram({"10": 1, "30": 1}) == 2000  # even count: the mean of the middle two
    assert median_from_histogram({"5": 1, "600": 3, "7": 0}) == 60_000


# ---- queries per page: a fixed number, whatever the project holds ---------------------------------------


def _a_busy_project(project, make_member, *, tasks: int, labelers: int):
    project.rankings_per_task = 2
    project.save()
    team = [make_member(project, username=f"busy{len(project.name)}-{i}") for i in range(labelers)]
    for number in range(tasks):
        task = RankingTaskFactory(project=project, answers=3)
        a, b, c = response_ids(task)
        for labeler in (team[number % labelers], team[(number + 1) % labelers]):
            _rank(task, labeler, [[a], [b], [c]] if number % 3 else [[c], [a, b]], time_spent_ms=5000,
                  flags={str(a): ["harmful"]})
    RankingTaskFactory.create_batch(tasks, project=project, answers=3)  # and as many waiting
    ranking_task_skip(task=RankingTaskFactory(project=project, answers=2), labeler=team[0])
    return team


PAGES = {
    "project page": ("labeler", "/projects/{pid}/"),
    "project page as manager": ("manager", "/projects/{pid}/"),
    "my ranking stats": ("labeler", "/projects/{pid}/ranking/stats/"),
    "ranking quality": ("manager", "/projects/{pid}/ranking/quality/"),
    "import page": ("manager", "/projects/{pid}/ranking/import/"),
    "API my stats": ("labeler", "/api/projects/{pid}/ranking-stats/me/"),
    "API ranking quality": ("manager", "/api/projects/{pid}/ranking-quality/"),
    "API ranking tasks": ("manager", "/api/ranking-tasks/?project={pid}"),
    "API prompts": ("manager", "/api/prompts/?project={pid}"),
    "admin ranking tasks": ("superuser", "/admin/ranking/rankingtask/"),
    "admin rankings": ("superuser", "/admin/ranking/ranking/"),
    "admin leases": ("superuser", "/admin/ranking/lease/"),
    "admin skips": ("superuser", "/admin/ranking/skip/"),
    "admin prompts": ("superuser", "/admin/annotation/prompt/"),
    "admin dialogues": ("superuser", "/admin/annotation/dialogue/"),
}


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(queries)


@pytest.mark.parametrize("page", list(PAGES))
def test_a_page_runs_as_many_queries_for_a_big_project_as_for_a_small_one(page, client, make_member, django_user_model):
    """Ten times the tasks, rankings and labelers: not one query more (an N+1 would add one per row)."""
    from tests.factories import ProjectFactory

    role, path = PAGES[page]
    counts = []
    for size in (2, 20):
        project = ProjectFactory(name=f"p{size}")
        team = _a_busy_project(project, make_member, tasks=size, labelers=max(size // 4, 2))
        users = {
            "labeler": team[0],
            "manager": make_member(project, Role.MANAGER),
            "superuser": django_user_model.objects.create_superuser(f"root{size}", f"root{size}@example.com", "x"),
        }
        client.force_login(users[role])
        _queries(client, path.format(pid=project.pk))  # first view: sessions, caches
        counts.append(_queries(client, path.format(pid=project.pk)))
    assert counts[1] == counts[0], f"{page}: {counts[0]} queries with 2 tasks, {counts[1]} with 20"
    assert counts[0] <= 25, f"{page}: {counts[0]} queries"
