"""The ranking import at scale: one pass over the file, batches written as they come (COPY on PostgreSQL),
progress after each batch; gold orders, authors and carried preferences written as tasks made one by one are."""

import io
import json

import pytest

from ranking.models import Ranking, RankingTask, TaskStatus
from ranking.services.imports import BATCH_LINES, ImportRefused, ranking_tasks_import

pytestmark = pytest.mark.django_db


def _line(n: int, k: int = 3) -> dict:
    return {"context": [{"role": "user", "content": f"Question {n}?"}],
            "responses": [{"content": f"Answer {i} to {n}", "generator": "m"} for i in range(k)]}


def _upload(lines) -> io.BytesIO:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    return io.BytesIO(text.encode())


def test_progress_is_reported_after_each_batch_and_at_the_end(project):
    lines = BATCH_LINES * 2 + 5
    seen: list[int] = []
    report = ranking_tasks_import(project=project, file=_upload(_line(n) for n in range(lines)),
                                  format="ranking-jsonl", created_by=None, progress=seen.append, keep_task_ids=False)
    assert seen == [BATCH_LINES, BATCH_LINES * 2, lines]
    assert report.tasks_created == lines and report.task_ids == []
    assert RankingTask.objects.filter(project=project).count() == lines


def test_gold_orders_human_authors_and_hh_preferences_are_written_as_tasks_made_one_by_one(project, make_member):
    writer = make_member(project, username="writer")
    project.rankings_per_task = 1
    project.save()
    ranking_tasks_import(project=project, created_by=None, format="ranking-jsonl", file=_upload([
        {"context": [{"role": "user", "content": "Q"}], "responses": ["a", "b\twith\\tab\nand line", "c"],
         "gold_order": [[2], [0, 1]]},
        {"context": [{"role": "user", "content": "R"}], "responses": [
            {"content": "mine", "generator": "human:writer"}, {"content": "theirs", "generator": "m"}]},
    ]))
    gold, authored = RankingTask.objects.filter(project=project).order_by("pk")
    a, b, c = gold.responses.order_by("position").values_list("pk", flat=True)
    assert gold.is_gold and gold.gold_order == [[c], sorted([a, b])] and gold.status == TaskStatus.OPEN
    assert gold.responses.get(position=1).content == "b\twith\\tab\nand line"
    assert authored.responses.get(position=0).created_by == writer and authored.import_hash
    ranking_tasks_import(project=project, created_by=None, format="hh-rlhf", file=_upload([
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}]))
    carried = RankingTask.objects.filter(project=project, source="hh-rlhf").get()
    chosen, rejected = carried.responses.order_by("position").values_list("pk", flat=True)
    assert Ranking.objects.get(task=carried, is_imported=True).order == [[chosen], [rejected]]
    assert carried.status == TaskStatus.COMPLETE and carried.consensus_order == [[chosen], [rejected]]
    if hasattr(carried, "rankings_count"):
        assert carried.rankings_count == 1


def test_a_lone_surrogate_refuses_its_line_by_name(project):
    with pytest.raises(ImportRefused) as refused:
        ranking_tasks_import(project=project, created_by=None, format="ranking-jsonl", file=_upload([
            _line(1), '{"context": [{"role": "user", "content": "x\\ud800"}], "responses": ["a", "b"]}']))
    assert refused.value.errors[0].startswith("line 2: context.0.content holds a lone UTF-16 surrogate")
    assert not RankingTask.objects.exists()
