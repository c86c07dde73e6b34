"""Importing prompts and demonstrations, and exporting accepted ones as SFT JSONL."""

import json
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import Dialogue, DialogueStatus, Prompt, Role
from annotation.services.dialogues import TurnData, dialogue_review, dialogue_submit
from annotation.services.exports import sft_export_prepare
from annotation.services.imports import hh_transcript_to_turns, turns_to_hh_transcript
from tests.annotation.factories import DialogueFactory, PromptFactory
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db
HH_FIXTURE = Path(__file__).parent / "fixtures" / "hh_rlhf_small.jsonl"


def upload(content: str | bytes, name: str = "data.jsonl") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content.encode() if isinstance(content, str) else content)


def jsonl(*rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


@pytest.fixture
def manager(project, make_member):
    return make_member(project, Role.MANAGER)


def post_import(client, project, content, fmt, **extra):
    return client.post(
        f"/api/projects/{project.id}/import/",
        {"file": upload(content), "format": fmt, **extra},
        format="multipart",
    )


def export_lines(client, project) -> tuple[object, list[dict]]:
    response = client.get(f"/api/projects/{project.id}/export/sft.jsonl")
    body = b"".join(response.streaming_content).decode() if response.status_code == 200 else ""
    return response, [json.loads(line) for line in body.splitlines()]


# --- prompts ----------------------------------------------------------------------------------------------


def test_prompts_jsonl_import_reports_duplicates_in_file_and_project(project, manager, api_client_for):
    PromptFactory(project=project, text="Already here.")
    content = jsonl(
        {"prompt": "First?"}, {"text": "Second?"}, {"prompt": "Already  here."}, {"prompt": "First?"}
    )
    response = post_import(api_client_for(manager), project, "\n" + content, "prompts-jsonl")
    assert response.status_code == 201, response.content
    report = response.json()
    assert (report["rows"], report["created"]) == (4, 2)
    assert report["duplicates"] == {"count": 2, "lines": [4, 5]}  # line 1 of the file is blank
    assert set(Prompt.objects.filter(project=project).values_list("text", flat=True)) == {
        "Already here.",
        "First?",
        "Second?",
    }


def test_prompts_csv_import_reads_quoted_multiline_cells(project, manager, api_client_for):
    content = 'id,prompt\n1,"Write a poem\nabout the sea"\n2,Plain one\n\n3,"Quote ""this"""\n'
    response = post_import(api_client_for(manager), project, content, "prompts-csv")
    assert response.status_code == 201, response.content
    assert response.json()["created"] == 3
    assert set(Prompt.objects.values_list("text", flat=True)) == {
        "Write a poem\nabout the sea",
        "Plain one",
        'Quote "this"',
    }


def test_csv_without_a_prompt_column_names_line_1(project, manager, api_client_for):
    response = post_import(api_client_for(manager), project, "question\nWhy?\n", "prompts-csv")
    assert response.status_code == 400
    assert response.json() == {
        "detail": 'line 1: the header row needs a "prompt" (or "text") column.',
        "line": 1,
    }


@pytest.mark.parametrize(
    ("fmt", "bad_line", "reason"),
    [
        ("prompts-jsonl", '{"prompt": "unterminated', "not valid JSON"),
        ("prompts-jsonl", '{"prompt": 42}', 'expected a "prompt" string'),
        ("prompts-jsonl", '["a list"]', "expected an object"),
        ("messages-jsonl", '{"messages": [{"role": "user", "content": "only a question"}]}', "last turn"),
        ("messages-jsonl", '{"messages": [{"role": "robot", "content": "x"}]}', "role must be one of"),
        ("hh-rlhf", '{"chosen": "no speaker markers at all"}', "must start with"),
        ("hh-rlhf", '{"rejected": "\\n\\nHuman: hi\\n\\nAssistant: yo"}', '"chosen"'),
    ],
)
def test_a_malformed_line_refuses_the_whole_file_and_names_the_line(
    project, manager, api_client_for, fmt, bad_line, reason
):
    good = {
        "prompts-jsonl": jsonl({"prompt": "good 1"}, {"prompt": "good 2"}),
        "messages-jsonl": jsonl(
            {"messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]},
            {"messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]},
        ),
        "hh-rlhf": jsonl(
            {"chosen": "\n\nHuman: q1\n\nAssistant: a1"}, {"chosen": "\n\nHuman: q2\n\nAssistant: a2"}
        ),
    }[fmt]
    content = good + bad_line + "\n" + jsonl({"prompt": "after"})
    response = post_import(api_client_for(manager), project, content, fmt)
    assert response.status_code == 400
    body = response.json()
    assert body["line"] == 3 and body["detail"].startswith("line 3: ") and reason in body["detail"]
    assert Prompt.objects.count() == 0 and Dialogue.objects.count() == 0  # nothing changed


def test_non_utf8_bytes_name_their_line(project, manager, api_client_for):
    content = b'{"prompt": "fine"}\n{"prompt": "caf\xe9"}\n'
    response = post_import(api_client_for(manager), project, content, "prompts-jsonl")
    assert response.status_code == 400 and response.json()["line"] == 2
    assert Prompt.objects.count() == 0


HH_LINE = {"chosen": "\n\nHuman: q\n\nAssistant: a"}
MESSAGES_LINE = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
FIRST_LINE = {"prompts-jsonl": {"prompt": "fine"}, "messages-jsonl": MESSAGES_LINE, "hh-rlhf": HH_LINE}


@pytest.mark.parametrize("fmt", ["prompts-jsonl", "messages-jsonl", "hh-rlhf"])
@pytest.mark.parametrize(
    ("second_line", "reason"),
    [
        (b'{"prompt": ' + b"9" * 5_000 + b"}", "not valid JSON"),  # past Python's int-from-text limit
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
    ids=["huge-integer", "deep-nesting"],
)
def test_json_python_cannot_decode_is_refused_naming_its_line(
    project, manager, api_client_for, fmt, second_line, reason
):
    content = jsonl(FIRST_LINE[fmt]).encode() + second_line + b"\n"
    response = post_import(api_client_for(manager), project, content, fmt)
    assert response.status_code == 400
    assert response.json()["line"] == 2 and reason in response.json()["detail"]
    assert Prompt.objects.count() == 0 and Dialogue.objects.count() == 0


@pytest.mark.parametrize(
    ("fmt", "content"),
    [
        ("prompts-jsonl", jsonl({"prompt": "fine"}, {"prompt": "a\u0000b"})),
        ("prompts-csv", "prompt\nfine\na\u0000b\n"),
        (
            "messages-jsonl",
            jsonl(MESSAGES_LINE, {"messages": [{"role": "user", "content": "q\u0000"}, {"role": "assistant", "content": "a"}]}),
        ),
        ("hh-rlhf", jsonl(HH_LINE, {"chosen": "\n\nHuman: q\u0000\n\nAssistant: a"})),
    ],
)
def test_a_nul_character_is_refused_naming_its_line(project, manager, api_client_for, fmt, content):
    response = post_import(api_client_for(manager), project, content, fmt)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("line ") and "NUL" in response.json()["detail"]
    assert Prompt.objects.count() == 0 and Dialogue.objects.count() == 0


def test_a_latin1_csv_names_the_line_with_the_bad_byte(project, manager, api_client_for):
    content = b"prompt\nfine\nCaf\xe9 au lait\n"
    response = post_import(api_client_for(manager), project, content, "prompts-csv")
    assert response.status_code == 400
    assert response.json() == {"detail": "line 3: not UTF-8 text (save the file as UTF-8).", "line": 3}
    assert Prompt.objects.count() == 0


def test_a_csv_with_a_byte_order_mark_imports(project, manager, api_client_for):
    response = post_import(api_client_for(manager), project, "\ufeffprompt\nWhy?\n".encode(), "prompts-csv")
    assert response.status_code == 201 and response.json()["created"] == 1


@pytest.mark.parametrize(("fmt", "content"), [("prompts-jsonl", "\n\n  \n"), ("prompts-csv", "prompt\n")])
def test_a_file_with_nothing_to_import_is_refused(project, manager, api_client_for, fmt, content):
    response = post_import(api_client_for(manager), project, content, fmt)
    assert response.status_code == 400
    assert response.json()["detail"] == "Nothing to import: the file holds no prompts."


def test_skip_invalid_imports_the_rest_and_lists_what_it_skipped(project, manager, api_client_for):
    content = jsonl(
        {"chosen": "\n\nHuman: q\n\nAssistant: a"}, {"chosen": "\n\nHuman: list words\n\nAssistant: "}
    )
    response = post_import(api_client_for(manager), project, content, "hh-rlhf", skip_invalid="true")
    assert response.status_code == 201
    assert response.json()["created"] == 1
    assert response.json()["skipped"] == {
        "count": 1,
        "lines": [{"line": 2, "reason": "turn 2 (assistant) is empty."}],
    }


def test_import_size_limit(project, manager, api_client_for, settings):
    settings.IMPORT_MAX_BYTES = 100
    response = post_import(
        api_client_for(manager), project, jsonl(*({"prompt": f"p{i}"} for i in range(20))), "prompts-jsonl"
    )
    assert response.status_code == 413 and "limited to 100 bytes" in response.json()["detail"]
    assert Prompt.objects.count() == 0


@pytest.mark.parametrize("role", [Role.LABELER, Role.REVIEWER])
def test_only_managers_import(project, make_member, api_client_for, role):
    response = post_import(
        api_client_for(make_member(project, role)), project, jsonl({"prompt": "x"}), "prompts-jsonl"
    )
    assert response.status_code == 404 and Prompt.objects.count() == 0


def test_an_unknown_format_is_refused(project, manager, api_client_for):
    response = post_import(api_client_for(manager), project, jsonl({"prompt": "x"}), "alpaca")
    assert response.status_code == 400 and "format" in response.json()["detail"]


# --- dialogues -----------------------------------------------------------------------------------------------


def test_messages_jsonl_can_be_imported_for_review(project, manager, make_member, api_client_for):
    content = jsonl({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    response = post_import(
        api_client_for(manager), project, content, "messages-jsonl", dialogue_status="submitted"
    )
    assert response.status_code == 201
    dialogue = Dialogue.objects.get()
    assert (dialogue.status, dialogue.author, dialogue.source) == (
        DialogueStatus.SUBMITTED,
        manager,
        "imported",
    )
    reviewer = make_member(project, Role.REVIEWER)
    assert api_client_for(reviewer).get("/api/dialogues/review-queue/").json()["count"] == 1


def test_hh_transcript_parsing_joins_a_speakers_consecutive_parts():
    turns = hh_transcript_to_turns("\n\nHuman: Joke?\n\nAssistant: Setup.\n\nAssistant: Punchline.")
    assert turns == [TurnData("user", "Joke?"), TurnData("assistant", "Setup.\n\nPunchline.")]
    assert turns_to_hh_transcript(turns) == "\n\nHuman: Joke?\n\nAssistant: Setup.\n\nPunchline."


def test_hh_rlhf_fixture_import_then_export_keeps_every_turn(project, manager, api_client_for):
    client = api_client_for(manager)
    response = client.post(
        f"/api/projects/{project.id}/import/",
        {"file": upload(HH_FIXTURE.read_bytes(), "hh.jsonl"), "format": "hh-rlhf"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    report = response.json()
    assert (report["rows"], report["created"], report["duplicates"]) == (5, 4, {"count": 1, "lines": [5]})

    expected = []
    for line in HH_FIXTURE.read_text().splitlines()[:4]:
        turns = hh_transcript_to_turns(json.loads(line)["chosen"])
        expected.append({"messages": [{"role": t.role, "content": t.content} for t in turns]})
    exported, rows = export_lines(client, project)
    assert exported["X-Row-Count"] == "4"
    assert rows == expected
    assert rows[3]["messages"][1]["content"] == (
        "Why did the scarecrow win an award?\n\nBecause he was outstanding in his field."
    )
    assert sum(len(r["messages"]) for r in rows) == 2 + 4 + 2 + 4

    again = client.post(
        f"/api/projects/{project.id}/import/",
        {"file": upload(HH_FIXTURE.read_bytes(), "hh.jsonl"), "format": "hh-rlhf"},
        format="multipart",
    ).json()
    assert (again["created"], again["duplicates"]["count"]) == (0, 5)


# --- export ---------------------------------------------------------------------------------------------------


def test_export_streams_only_accepted_dialogues_with_snapshot_headers(
    project, manager, make_member, api_client_for
):
    author, reviewer = make_member(project), make_member(project, Role.REVIEWER)
    accepted = dialogue_submit(
        dialogue=DialogueFactory(
            project=project,
            author=author,
            turns=[
                TurnData("system", "Be kind."),
                TurnData("user", "Hi <b>there</b>"),
                TurnData("assistant", "Hello!"),
            ],
        ),
        author=author,
    )
    dialogue_review(dialogue=accepted, reviewer=reviewer, decision="accept")
    dialogue_submit(dialogue=DialogueFactory(project=project, author=author), author=author)  # waiting
    DialogueFactory(project=project, author=author)  # draft
    DialogueFactory(project=ProjectFactory(), status=DialogueStatus.DRAFT)

    response, rows = export_lines(api_client_for(manager), project)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/jsonl")
    assert response["X-Row-Count"] == "1" and "T" in response["X-Snapshot-Time"]
    assert f'filename="{project.slug}-sft-' in response["Content-Disposition"]
    assert rows == [
        {
            "messages": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "Hi <b>there</b>"},
                {"role": "assistant", "content": "Hello!"},
            ]
        }
    ]


def test_export_counts_only_rows_accepted_by_the_snapshot_time(project, manager):
    DialogueFactory(project=project, status=DialogueStatus.ACCEPTED, accepted_at="2030-01-01T00:00:00Z")
    snapshot = sft_export_prepare(project=project)
    assert snapshot.row_count == 0 and list(snapshot.lines()) == []


def test_who_may_export(project, make_member, api_client_for):
    labeler, reviewer = make_member(project), make_member(project, Role.REVIEWER)
    engineer = make_member(project)
    engineer.user_permissions.add(Permission.objects.get(codename="use_training_api"))
    outside_engineer = make_member(ProjectFactory())
    outside_engineer.user_permissions.add(Permission.objects.get(codename="use_training_api"))
    url = f"/api/projects/{project.id}/export/sft.jsonl"
    assert api_client_for(labeler).get(url).status_code == 404
    assert api_client_for(reviewer).get(url).status_code == 404
    assert api_client_for(outside_engineer).get(url).status_code == 404
    assert api_client_for(engineer).get(url).status_code == 200
    assert api_client_for(engineer).get(url, HTTP_ACCEPT="application/jsonl").status_code == 200


def test_a_large_export_streams_in_chunks(project, manager, api_client_for, django_assert_max_num_queries):
    DialogueFactory.create_batch(
        1200, project=project, status=DialogueStatus.ACCEPTED, accepted_at="2020-01-01T00:00Z"
    )
    response = api_client_for(manager).get(f"/api/projects/{project.id}/export/sft.jsonl")
    assert response.streaming
    with django_assert_max_num_queries(6):  # a cursor for the ids and a query per 2,000 dialogues, not one per row
        blocks = list(response.streaming_content)
    assert 1 < len(blocks) < 1200  # lines go out in blocks of about 64 KB, not one write per line
    lines = b"".join(blocks).splitlines()
    assert len(lines) == 1200
    assert json.loads(lines[0])["messages"][1] == {"role": "assistant", "content": "Paris."}
