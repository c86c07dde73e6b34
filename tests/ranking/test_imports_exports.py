"""Imports (ranking-jsonl, hh-rlhf; all or nothing) and exports (TRL preference pairs, HH-RLHF)."""

import io
import json

import pytest
from django.db import IntegrityError, transaction

from annotation.models import Role
from config.exceptions import ApplicationError
from ranking.models import Ranking, RankingTask, TaskStatus
from ranking.services.exports import hh_rlhf_pairs, preference_pairs
from ranking.services.imports import (
    ImportRefused,
    hh_transcript_parse,
    hh_transcript_render,
    ranking_tasks_import,
)
from ranking.services.rankings import ranking_submit
from ranking.services.tasks import ranking_task_gold_set
from tests.factories import ProjectFactory
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = pytest.mark.django_db

HH_LINES = [
    {"chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4.", "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5."},
    {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: Why did the chicken…",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: No.",
    },
]


def _file(lines) -> io.BytesIO:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    return io.BytesIO(text.encode())


def _import(project, lines, fmt):
    return ranking_tasks_import(project=project, file=_file(lines), format=fmt, created_by=None)


def test_ranking_jsonl_import_creates_tasks_with_their_answers(project, make_member):
    author = make_member(project, username="writer")
    report = _import(project, [
        {"context": [{"role": "user", "content": "Hi?"}],
         "responses": [{"content": "Hello", "generator": "m1"}, {"content": "Hey", "generator": "human:writer"}]},
        {"context": [{"role": "user", "content": "Q"}], "responses": ["a", "b", "c"], "gold_order": [[2], [0, 1]]},
    ], "ranking-jsonl")
    assert report.tasks_created == 2 and report.rankings_imported == 0
    first, second = RankingTask.objects.order_by("pk")
    assert [r.content for r in first.responses.all()] == ["Hello", "Hey"]
    assert first.responses.get(content="Hey").created_by == author
    ids = response_ids(second)
    assert second.is_gold and second.gold_order == [[ids[2]], sorted([ids[0], ids[1]])]
    assert first.source == "ranking-jsonl"


def test_a_file_with_errors_imports_nothing_and_names_every_line(project):
    good = {"context": [{"role": "user", "content": "q"}], "responses": ["a", "b"]}
    lines = [
        good,
        "{broken",
        {"context": [{"role": "user", "content": "q"}], "responses": ["only one"]},
        good,
        {"context": [{"role": "assistant", "content": "q"}], "responses": ["a", "b"]},
        {"responses": ["a", "b"]},
    ]
    with pytest.raises(ImportRefused) as refused:
        _import(project, lines, "ranking-jsonl")
    errors = refused.value.errors
    assert [e.split(":")[0] for e in errors] == ["line 2", "line 3", "line 5", "line 6"]
    assert "2 to 9 answers" in errors[1] and "must end with a user" in errors[2]
    assert "4 line(s) have errors" in refused.value.message
    assert not RankingTask.objects.exists()


def test_unknown_format_empty_file_and_binary_are_refused(project):
    with pytest.raises(ApplicationError, match="format must be one of"):
        _import(project, ["{}"], "csv")
    with pytest.raises(ApplicationError, match="no tasks"):
        ranking_tasks_import(project=project, file=io.BytesIO(b"\n\n"), format="hh-rlhf", created_by=None)
    with pytest.raises(ImportRefused, match="not UTF-8"):
        ranking_tasks_import(project=project, file=io.BytesIO(b"\xff\xfe\n"), format="hh-rlhf", created_by=None)


GOOD_TASK = {"context": [{"role": "user", "content": "q"}], "responses": ["a", "b"]}


@pytest.mark.parametrize(
    ("fmt", "bad_line", "message"),
    [
        ("ranking-jsonl", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("hh-rlhf", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("ranking-jsonl", {"context": [{"role": "user", "content": "q\u0000"}], "responses": ["a", "b"]}, "NUL"),
        ("ranking-jsonl", {"context": [{"role": "user", "content": "q"}], "responses": ["a\u0000", "b"]}, "NUL"),
        ("hh-rlhf", {"chosen": "\n\nHuman: q\u0000\n\nAssistant: a", "rejected": "\n\nHuman: q\u0000\n\nAssistant: b"}, "NUL"),
    ],
)
def test_lines_the_database_or_decoder_cannot_take_are_refused_through_the_api(
    api_client_for, project, make_member, fmt, bad_line, message
):
    first = GOOD_TASK if fmt == "ranking-jsonl" else HH_LINES[0]
    upload = _file([first, bad_line])
    upload.name = "tasks.jsonl"
    response = api_client_for(make_member(project, Role.MANAGER)).post(
        "/api/ranking-tasks/import/", {"project": project.pk, "format": fmt, "file": upload}, format="multipart"
    )
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error.startswith("line 2: ") and message in error
    assert not RankingTask.objects.exists()


def test_a_file_starting_with_a_byte_order_mark_imports(project):
    file = io.BytesIO("\ufeff".encode() + _file([GOOD_TASK]).getvalue())
    report = ranking_tasks_import(project=project, file=file, format="ranking-jsonl", created_by=None)
    assert report.tasks_created == 1


def test_hh_transcripts_parse_and_render_back():
    messages = hh_transcript_parse(HH_LINES[1]["chosen"])
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[2]["content"] == "Tell me a joke"
    assert hh_transcript_render(messages) == HH_LINES[1]["chosen"]


def test_hh_import_makes_k2_tasks_carrying_the_human_preference(project):
    project.rankings_per_task = 1
    project.save()
    report = _import(project, HH_LINES + [{"chosen": "\n\nHuman: x\n\nAssistant: same", "rejected": "\n\nHuman: x\n\nAssistant: same"}],
                     "hh-rlhf")
    assert report.tasks_created == 2 and report.rankings_imported == 2
    assert report.skipped_lines == [{"line": 3, "reason": "chosen and rejected are identical"}]
    task = RankingTask.objects.order_by("pk").last()
    assert task.context == [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me a joke"},
    ]
    chosen, rejected = response_ids(task)
    ranking = Ranking.objects.get(task=task)
    assert ranking.is_imported and ranking.labeler is None and ranking.order == [[chosen], [rejected]]
    assert task.status == TaskStatus.COMPLETE and task.consensus_order == [[chosen], [rejected]]


def test_hh_import_with_more_rankings_required_leaves_tasks_open_for_labelers(project, make_member):
    project.rankings_per_task = 2
    project.save()
    _import(project, HH_LINES[:1], "hh-rlhf")
    task = RankingTask.objects.get()
    assert task.status == TaskStatus.OPEN
    chosen, rejected = response_ids(task)
    ranking_submit(task=task, labeler=make_member(project), order=[[rejected], [chosen]])
    task.refresh_from_db()
    assert task.status == TaskStatus.COMPLETE and task.consensus_order == [[chosen, rejected]]  # 1:1 -> tie


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"chosen": "\n\nHuman: a\n\nAssistant: b"}, "non-empty transcript"),
        ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: other\n\nAssistant: c"}, "share the conversation"),
        ({"chosen": "\n\nHuman: a", "rejected": "\n\nHuman: a"}, 'end with an "Assistant:" turn'),
        ({"chosen": "hello\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}, "must start with"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_bad_hh_lines_are_refused_with_their_line(project, line, message):
    with pytest.raises(ImportRefused) as refused:
        _import(project, [HH_LINES[0], line], "hh-rlhf")
    assert refused.value.errors[0].startswith("line 2: ") and message in refused.value.errors[0]
    assert not RankingTask.objects.exists()


def test_a_k4_ranking_with_one_tie_exports_five_pairs(project, make_member):
    task = RankingTaskFactory(project=project, answers=["A", "B", "C", "D"])
    a, b, c, d = response_ids(task)
    ranking = ranking_submit(task=task, labeler=make_member(project), order=[[a], [b, c], [d]]).ranking
    rows = list(preference_pairs(project=project))
    assert len(rows) == 5  # C(4,2) - 1 tied pair
    pairs = {(r["chosen"][0]["content"], r["rejected"][0]["content"]): r["margin"] for r in rows}
    assert pairs == {("A", "B"): 1.0, ("A", "C"): 1.0, ("A", "D"): 2.0, ("B", "D"): 1.0, ("C", "D"): 1.0}
    for row in rows:
        assert set(row) == {"prompt", "chosen", "rejected", "margin", "group"}
        assert row["prompt"] == task.context
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
        assert row["group"] == f"ranking-{ranking.pk}"


def test_consensus_pairs_give_one_group_per_task_and_gold_uses_the_known_order(project, make_member):
    project.rankings_per_task = 2
    project.save()
    task = RankingTaskFactory(project=project, answers=["A", "B", "C"])
    a, b, c = response_ids(task)
    ranking_submit(task=task, labeler=make_member(project), order=[[a], [b], [c]])
    ranking_submit(task=task, labeler=make_member(project), order=[[a], [c], [b]])
    gold = RankingTaskFactory(project=project, answers=["X", "Y"])
    x, y = response_ids(gold)
    ranking_task_gold_set(task=gold, order=[[y], [x]])
    RankingTaskFactory(project=project, answers=2)  # no rankings: nothing exported
    rows = list(preference_pairs(project=project, pairs="consensus"))
    # consensus A > {B, C}: AB, AC (B, C tie); gold Y > X
    assert [(r["group"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows] == [
        (f"task-{task.pk}", "A", "B"), (f"task-{task.pk}", "A", "C"), (f"task-{gold.pk}", "Y", "X"),
    ]
    assert len(list(preference_pairs(project=project))) == 6  # labeler pairs: 3 + 3


def test_all_bad_rankings_can_be_left_out(project, make_member):
    task = RankingTaskFactory(project=project, answers=2)
    ranking_submit(task=task, labeler=make_member(project), order=[[i] for i in response_ids(task)], all_bad=True)
    assert len(list(preference_pairs(project=project))) == 1
    assert list(preference_pairs(project=project, include_all_bad=False)) == []


def test_hh_import_then_preference_export_keeps_every_chosen_and_rejected(project):
    _import(project, HH_LINES, "hh-rlhf")
    rows = list(preference_pairs(project=project))
    assert len(rows) == 2
    for line, row in zip(HH_LINES, rows, strict=True):
        assert hh_transcript_render(row["prompt"] + row["chosen"]) == line["chosen"]
        assert hh_transcript_render(row["prompt"] + row["rejected"]) == line["rejected"]
    assert [dict(r) for r in hh_rlhf_pairs(project=project)] == HH_LINES  # and HH-RLHF round-trips exactly


def test_export_endpoint_streams_jsonl(api_client_for, project, make_member, ml_engineer):
    _import(project, HH_LINES, "hh-rlhf")
    client = api_client_for(ml_engineer(project))
    response = client.get(f"/api/projects/{project.pk}/export/preferences.jsonl")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("application/jsonl")
    assert f'filename="{project.slug}-preferences-labeler.jsonl"' in response["Content-Disposition"]
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [json.loads(line)["chosen"][0]["content"] for line in lines] == ["4.", "Why did the chicken…"]
    hh = api_client_for(make_member(project, Role.MANAGER)).get(f"/api/projects/{project.pk}/export/hh-rlhf.jsonl")
    assert [json.loads(line) for line in b"".join(hh.streaming_content).decode().splitlines()] == HH_LINES


def test_export_file_reads_in_the_training_engine(project, make_member, tmp_path):
    from training.engine.data import read_preference_pairs

    task = RankingTaskFactory(project=project, answers=4)
    a, b, c, d = response_ids(task)
    ranking_submit(task=task, labeler=make_member(project), order=[[a], [b, c], [d]])
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in preference_pairs(project=project)))
    rows = read_preference_pairs(path)
    assert len(rows) == 5 and all(row["weight"] == pytest.approx(1 / 5) for row in rows)


def test_import_endpoint_all_or_nothing(api_client_for, project, make_member):
    client = api_client_for(make_member(project, Role.MANAGER))
    upload = _file(HH_LINES)
    upload.name = "hh.jsonl"
    response = client.post("/api/ranking-tasks/import/", {"project": project.pk, "format": "hh-rlhf", "file": upload},
                           format="multipart")
    assert response.status_code == 201
    assert response.json()["tasks_created"] == 2 and response.json()["rankings_imported"] == 2
    assert len(response.json()["task_ids"]) == 2


JSONL_LINES = [
    {"context": [{"role": "user", "content": "Hi?"}], "responses": ["Hello", "Hey"]},
    {"context": [{"role": "user", "content": "Q"}], "responses": ["a", "b", "c"]},
]


@pytest.mark.parametrize(("fmt", "lines"), [("ranking-jsonl", JSONL_LINES), ("hh-rlhf", HH_LINES)])
def test_importing_the_same_file_twice_creates_its_tasks_once(project, fmt, lines):
    first = _import(project, lines, fmt)
    again = _import(project, lines, fmt)
    assert first.tasks_created == 2 and first.duplicates == {"count": 0, "lines": []}
    assert again.tasks_created == 0 and again.rankings_imported == 0 and again.task_ids == []
    assert again.duplicates == {"count": 2, "lines": [1, 2]}
    assert RankingTask.objects.filter(project=project).count() == 2
    assert Ranking.objects.filter(task__project=project).count() == first.rankings_imported


def test_a_task_repeated_in_the_file_is_imported_once_whatever_the_order_of_its_answers(project):
    report = _import(project, [
        JSONL_LINES[0],
        {"context": [{"role": "user", "content": "Hi?"}], "responses": ["Hey", "Hello"]},  # same answers
        {"context": [{"role": "user", "content": "Hi?"}], "responses": ["Hey", "Howdy"]},  # other answers
        {"context": [{"role": "user", "content": "Hi!"}], "responses": ["Hey", "Hello"]},  # other context
    ], "ranking-jsonl")
    assert report.tasks_created == 3 and report.duplicates == {"count": 1, "lines": [2]}
    assert RankingTask.objects.filter(project=project).count() == 3


def test_a_file_mixing_old_and_new_tasks_adds_only_the_new_ones(project):
    _import(project, JSONL_LINES[:1], "ranking-jsonl")
    report = _import(project, JSONL_LINES, "ranking-jsonl")
    assert report.tasks_created == 1 and report.duplicates["lines"] == [1]
    assert sorted(RankingTask.objects.values_list("context__0__content", flat=True)) == ["Hi?", "Q"]


def test_the_same_content_in_another_project_is_not_a_duplicate(project):
    other = ProjectFactory()
    _import(project, JSONL_LINES, "ranking-jsonl")
    assert _import(other, JSONL_LINES, "ranking-jsonl").tasks_created == 2


def test_duplicates_do_not_excuse_a_wrong_line(project):
    _import(project, JSONL_LINES, "ranking-jsonl")
    with pytest.raises(ImportRefused) as refused:
        _import(project, [*JSONL_LINES, {"context": [], "responses": ["a", "b"]}, *JSONL_LINES], "ranking-jsonl")
    assert refused.value.errors[0].startswith("line 3:")
    assert RankingTask.objects.filter(project=project).count() == 2


def test_the_database_refuses_two_tasks_with_the_same_import_hash_in_a_project(project):
    RankingTaskFactory(project=project, import_hash="")
    RankingTaskFactory(project=project, import_hash="")  # tasks made otherwise have no hash
    RankingTaskFactory(project=project, import_hash="a" * 64)
    with pytest.raises(IntegrityError), transaction.atomic():
        RankingTaskFactory(project=project, import_hash="a" * 64)


def test_import_endpoint_reports_duplicates(api_client_for, project, make_member):
    client = api_client_for(make_member(project, Role.MANAGER))
    bodies = []
    for _ in range(2):
        upload = _file(HH_LINES)
        upload.name = "hh.jsonl"
        response = client.post("/api/ranking-tasks/import/",
                               {"project": project.pk, "format": "hh-rlhf", "file": upload}, format="multipart")
        assert response.status_code == 201
        bodies.append(response.json())
    assert bodies[0]["duplicates"] == {"count": 0, "lines": []} and bodies[0]["tasks_created"] == 2
    assert bodies[1]["duplicates"] == {"count": 2, "lines": [1, 2]} and bodies[1]["tasks_created"] == 0


# Lines like the 4 of 1,000 in Anthropic's harmless-base sample that can't become a K=2 task: an empty
# last assistant turn, and a chosen transcript one exchange longer than the rejected one
HH_EMPTY_ANSWER = {"chosen": "\n\nHuman: list of bad words\n\nAssistant: ", "rejected": "\n\nHuman: list of bad words\n\nAssistant: Ok"}
HH_DIVERGING = {
    "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: And?\n\nAssistant: That is all.",
    "rejected": "\n\nHuman: Hi\n\nAssistant: Hi there.",
}
HH_WITH_BAD_LINES = [HH_LINES[0], HH_EMPTY_ANSWER, HH_DIVERGING, HH_LINES[1]]


def test_hh_import_refuses_a_file_with_bad_lines_by_default(project):
    with pytest.raises(ImportRefused) as refused:
        _import(project, HH_WITH_BAD_LINES, "hh-rlhf")
    assert [error.split(":")[0] for error in refused.value.errors] == ["line 2", "line 3"]
    assert not RankingTask.objects.exists()


def test_hh_import_with_skip_invalid_imports_the_good_lines_and_reports_the_others(project):
    report = ranking_tasks_import(
        project=project, file=_file(HH_WITH_BAD_LINES), format="hh-rlhf", created_by=None, skip_invalid=True
    )
    assert report.tasks_created == 2 and report.rankings_imported == 2
    assert report.skipped_invalid == {
        "count": 2,
        "lines": [
            {"line": 2, "reason": "chosen: the last assistant turn is empty"},
            {"line": 3, "reason": "chosen and rejected must share the conversation before their last assistant turn"},
        ],
    }
    assert sorted(RankingTask.objects.values_list("context__0__content", flat=True)) == ["Hi", "What is 2+2?"]


def test_skip_invalid_skips_any_line_the_importer_cannot_take(project):
    lines = [GOOD_TASK, "not json", {"context": [], "responses": ["a", "b"]}, [1, 2]]
    report = ranking_tasks_import(
        project=project, file=_file(lines), format="ranking-jsonl", created_by=None, skip_invalid=True
    )
    assert report.tasks_created == 1
    assert [line["line"] for line in report.skipped_invalid["lines"]] == [2, 3, 4]
    assert report.skipped_invalid["lines"][0]["reason"].startswith("not valid JSON")


def test_a_file_with_only_bad_lines_imports_nothing_even_with_skip_invalid(project):
    with pytest.raises(ApplicationError, match="no valid tasks to import: 2 line"):
        ranking_tasks_import(project=project, file=_file([HH_EMPTY_ANSWER, HH_DIVERGING]), format="hh-rlhf",
                             created_by=None, skip_invalid=True)
    assert not RankingTask.objects.exists()


def test_import_endpoint_skips_bad_lines_when_asked(api_client_for, project, make_member):
    client = api_client_for(make_member(project, Role.MANAGER))

    def post(**extra):
        upload = _file(HH_WITH_BAD_LINES)
        upload.name = "hh.jsonl"
        return client.post("/api/ranking-tasks/import/",
                           {"project": project.pk, "format": "hh-rlhf", "file": upload, **extra}, format="multipart")

    refused = post()
    assert refused.status_code == 400 and not RankingTask.objects.exists()
    response = post(skip_invalid="true")
    assert response.status_code == 201
    body = response.json()
    assert body["tasks_created"] == 2
    assert body["skipped_invalid"]["count"] == 2
    assert [line["line"] for line in body["skipped_invalid"]["lines"]] == [2, 3]
    assert body["skipped_invalid"]["lines"][0]["reason"] == "chosen: the last assistant turn is empty"
