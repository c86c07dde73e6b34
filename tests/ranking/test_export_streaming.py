"""Preference exports cost what they export: a cursor over the rankings, not a walk over every task; a bad
row is skipped and counted, and a failure half-way ends the body with an error line."""

import json

import pytest

from annotation.models import Role
from ranking.models import Ranking
from ranking.services.exports import ExportReport, jsonl_lines, preference_lines, preference_pairs
from ranking.services.rankings import ranking_submit
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = pytest.mark.django_db


def test_unranked_tasks_cost_the_export_nothing(project, make_member, django_assert_max_num_queries):
    ranked = RankingTaskFactory(project=project, answers=3)
    a, b, c = response_ids(ranked)
    ranking_submit(task=ranked, labeler=make_member(project), order=[[a], [b], [c]])
    RankingTaskFactory.create_batch(40, project=project, answers=3)  # never ranked
    with django_assert_max_num_queries(2):  # the rankings (joined to their task's context) and their answers' texts
        rows = list(preference_pairs(project=project))
    pairs = [(r["chosen"][0]["content"][:8], r["rejected"][0]["content"][:8]) for r in rows]
    assert pairs == [("Answer 1", "Answer 2"), ("Answer 1", "Answer 3"), ("Answer 2", "Answer 3")]


def test_a_ranking_that_names_another_tasks_answers_is_skipped_and_reported(
    api_client_for, project, make_member
):
    good, moved = RankingTaskFactory(project=project, answers=2), RankingTaskFactory(project=project, answers=2)
    x, y = response_ids(good)
    ranking_submit(task=good, labeler=make_member(project), order=[[x], [y]])
    broken = ranking_submit(task=moved, labeler=make_member(project), order=[[i] for i in response_ids(moved)]).ranking
    # as an admin edit made before rankings were checked left it: its order names the other task's answers
    Ranking.objects.filter(pk=broken.pk).update(order=[[y], [x]])
    report = ExportReport()
    rows = list(preference_pairs(project=project, report=report))
    assert [r["group"] for r in rows] == [f"ranking-{Ranking.objects.get(task=good).pk}"]
    assert report.pairs == 1 and report.skipped_count == 1 and report.skipped == [f"ranking-{broken.pk}"]

    response = api_client_for(make_member(project, Role.MANAGER)).get(
        f"/api/projects/{project.pk}/export/preferences.jsonl"
    )
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert response.status_code == 200 and len(lines) == 1 and "export_error" not in lines[0]


def test_a_failure_half_way_ends_the_body_with_an_error_line():
    def rows():
        yield {"prompt": [], "chosen": [], "rejected": []}
        yield {"prompt": [], "chosen": [], "rejected": []}
        raise KeyError(1234)

    lines = b"".join(jsonl_lines(rows())).decode().splitlines()
    assert len(lines) == 3 and "export_error" not in lines[0]
    last = json.loads(lines[2])
    assert set(last) == {"export_error"} and "after 2 line(s) (KeyError)" in last["export_error"]
    assert "incomplete" in last["export_error"]


def test_lines_leave_in_blocks_not_one_write_per_pair():
    rows = ({"n": n, "text": "x" * 100} for n in range(2000))
    blocks = list(jsonl_lines(rows))
    assert 1 < len(blocks) < 10 and all(block.endswith(b"\n") for block in blocks)
    assert [json.loads(line)["n"] for line in b"".join(blocks).splitlines()] == list(range(2000))


@pytest.mark.parametrize("pairs", ["labeler", "consensus"])
def test_the_fast_lines_are_the_json_of_the_pairs_byte_for_byte(project, make_member, pairs):
    project.rankings_per_task = 1
    project.save()
    for answers in (["«Ünïcode» \"quoted\"\n\ttabbed \\ back", "B", "C"], ["x", "y"]):
        task = RankingTaskFactory(project=project, answers=answers)
        ids = response_ids(task)
        ranking_submit(task=task, labeler=make_member(project), order=[[ids[-1]], ids[:-1]])
    for with_task in (False, True):
        rows = preference_pairs(project=project, pairs=pairs, with_task=with_task)
        expected = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        assert "".join(preference_lines(project=project, pairs=pairs, with_task=with_task)) == expected
        assert expected.count("\n") == 3
