"""Pages of demonstrations (server-rendered), the admin and the import command."""

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client

from annotation.models import Dialogue, DialogueStatus, Prompt, Review, Role
from annotation.services.dialogues import TurnData, dialogue_review, dialogue_submit
from tests.annotation.factories import DialogueFactory, PromptFactory
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db
XSS = '<img src=x onerror="window.__xss=1"> and <script>window.__xss=2</script>'


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_project_page_offers_the_actions_of_my_role(project, make_member):
    labeler_html = client_for(make_member(project)).get(f"/projects/{project.id}/").content.decode()
    assert "Write a demonstration" in labeler_html and "Review demonstrations" not in labeler_html
    assert "Import / export" not in labeler_html
    manager_html = (
        client_for(make_member(project, Role.MANAGER)).get(f"/projects/{project.id}/").content.decode()
    )
    assert "Review demonstrations" in manager_html and "Import / export" in manager_html


def test_next_prompt_button_opens_the_editor_on_a_leased_prompt(project, make_member):
    PromptFactory(project=project, text="Describe a sunset.")
    client = client_for(make_member(project))
    response = client.post(f"/projects/{project.id}/demonstrations/next/")
    dialogue = Dialogue.objects.get()
    assert response.status_code == 302 and response.url == f"/dialogues/{dialogue.id}/edit/"
    html = client.get(response.url).content.decode()
    assert "From the prompt queue" in html and "Describe a sunset." in html
    # the queue is done for the next labeler: they're told so and can start a blank conversation
    other = client_for(make_member(project))
    answer = other.post(f"/projects/{project.id}/demonstrations/next/", follow=True).content.decode()
    assert "Every prompt of the queue has its demonstrations" in answer


def test_blank_conversation_starts_a_draft_with_a_user_and_an_assistant_turn(project, make_member):
    client = client_for(make_member(project))
    response = client.post(f"/projects/{project.id}/demonstrations/new/")
    dialogue = Dialogue.objects.get()
    assert response.url == f"/dialogues/{dialogue.id}/edit/"
    assert [t.role for t in dialogue.turns.all()] == ["user", "assistant"]
    editor = client.get(response.url).content.decode()
    data = editor.split('id="dialogue-data" type="application/json">')[1].split("</script>")[0]
    assert json.loads(data)["limits"] == {"turn_max_chars": 8000, "turns_max": 40}


def test_my_work_shows_rejections_with_the_reviewers_comment(project, make_member):
    author, reviewer = make_member(project), make_member(project, Role.REVIEWER)
    dialogue = dialogue_submit(dialogue=DialogueFactory(project=project, author=author), author=author)
    dialogue_review(dialogue=dialogue, reviewer=reviewer, decision="reject", comment="Cite a source.")
    DialogueFactory(project=project, author=author)
    html = client_for(author).get("/my-work/?status=rejected").content.decode()
    assert "Cite a source." in html and "Revise" in html
    assert "Rejected (1)" in html and "Draft (1)" in html
    editor = client_for(author).get(f"/dialogues/{dialogue.id}/edit/").content.decode()
    assert "Rejected by" in editor and "Cite a source." in editor


def test_others_cannot_open_my_draft_or_its_editor(project, make_member):
    draft = DialogueFactory(project=project, author=make_member(project))
    for role in (Role.LABELER, Role.REVIEWER, Role.MANAGER):
        client = client_for(make_member(project, role))
        assert client.get(f"/dialogues/{draft.id}/").status_code == 404
        assert client.get(f"/dialogues/{draft.id}/edit/").status_code == 404


def test_review_page_shows_html_in_turns_as_text(project, make_member):
    author = make_member(project)
    dialogue = DialogueFactory(
        project=project,
        author=author,
        turns=[TurnData("user", XSS), TurnData("assistant", "**bold** answer")],
    )
    dialogue_submit(dialogue=dialogue, author=author)
    html = client_for(make_member(project, Role.REVIEWER)).get(f"/dialogues/{dialogue.id}/").content.decode()
    assert "<script>window.__xss" not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.__xss=2&lt;/script&gt;" in html
    assert "<strong>bold</strong> answer" in html  # Markdown still renders
    assert 'id="review-form"' in html


def test_reviewing_from_the_page_moves_to_the_next_dialogue(project, make_member):
    author, reviewer = make_member(project), make_member(project, Role.REVIEWER)
    first, second = (
        dialogue_submit(dialogue=DialogueFactory(project=project, author=author), author=author)
        for _ in range(2)
    )
    client = client_for(reviewer)
    response = client.post(f"/dialogues/{first.id}/review/", {"decision": "accept", "comment": ""})
    assert response.url == f"/dialogues/{second.id}/"
    refused = client.post(
        f"/dialogues/{second.id}/review/", {"decision": "reject", "comment": ""}, follow=True
    )
    assert "Say why you reject it" in refused.content.decode()
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (DialogueStatus.ACCEPTED, DialogueStatus.SUBMITTED)
    queue = client.get(f"/review/?project={project.id}").content.decode()
    assert f"/dialogues/{second.id}/" in queue and f"/dialogues/{first.id}/" not in queue


@pytest.mark.parametrize(
    ("comment", "message"),
    [("x" * 8_001, "a comment has at most 8,000"), ("why\x00", "NUL character")],
    ids=["too-long", "nul"],
)
def test_a_review_comment_the_database_cannot_take_is_refused_with_a_message(project, make_member, comment, message):
    author, reviewer = make_member(project), make_member(project, Role.REVIEWER)
    dialogue = dialogue_submit(dialogue=DialogueFactory(project=project, author=author), author=author)
    response = client_for(reviewer).post(
        f"/dialogues/{dialogue.id}/review/", {"decision": "reject", "comment": comment}, follow=True
    )
    assert response.status_code == 200 and message in response.content.decode()
    dialogue.refresh_from_db()
    assert dialogue.status == DialogueStatus.SUBMITTED and not Review.objects.exists()


def test_import_page_reports_the_bad_line_and_imports_nothing(project, make_member):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = client_for(make_member(project, Role.MANAGER))
    bad = SimpleUploadedFile("p.jsonl", b'{"prompt": "ok"}\n{"prompt": ""}\n')
    response = client.post(f"/projects/{project.id}/data/", {"file": bad, "format": "prompts-jsonl"})
    assert response.status_code == 400 and "line 2: the prompt is empty." in response.content.decode()
    assert Prompt.objects.count() == 0
    good = SimpleUploadedFile("p.jsonl", b'{"prompt": "ok"}\n{"prompt": "ok"}\n')
    response = client.post(f"/projects/{project.id}/data/", {"file": good, "format": "prompts-jsonl"})
    assert "Imported 1 prompts from 2 rows" in response.content.decode()
    assert "Skipped 1 duplicates (lines 2)" in response.content.decode()
    assert client_for(make_member(project)).get(f"/projects/{project.id}/data/").status_code == 404


def test_discard_from_the_editor(project, make_member):
    author = make_member(project)
    draft = DialogueFactory(project=project, author=author)
    assert client_for(author).post(f"/dialogues/{draft.id}/discard/").url == "/my-work/"
    assert not Dialogue.objects.exists()


# --- admin -----------------------------------------------------------------------------------------------------


@pytest.fixture
def staff_manager(project, make_member):
    manager = make_member(project, Role.MANAGER)
    manager.is_staff = True
    manager.save()
    manager.user_permissions.add(*Permission.objects.filter(content_type__app_label="annotation"))
    return manager


def test_admin_lists_dialogues_of_managed_projects_with_turns_inline(project, make_member, staff_manager):
    mine = DialogueFactory(project=project, author=make_member(project))
    theirs = DialogueFactory(project=ProjectFactory(name="Elsewhere"))
    client = client_for(staff_manager)
    listing = client.get("/admin/annotation/dialogue/?status__exact=draft").content.decode()
    assert f"/admin/annotation/dialogue/{mine.id}/change/" in listing
    assert f"/admin/annotation/dialogue/{theirs.id}/change/" not in listing
    change = client.get(f"/admin/annotation/dialogue/{mine.id}/change/").content.decode()
    assert "What is the capital of France?" in change and "turns-TOTAL_FORMS" in change
    assert client.get(f"/admin/annotation/dialogue/?author__id__exact={mine.author_id}").status_code == 200


def test_admin_bulk_accept_and_reject(project, make_member, staff_manager):
    author = make_member(project)
    waiting = [
        dialogue_submit(dialogue=DialogueFactory(project=project, author=author), author=author)
        for _ in range(3)
    ]
    draft = DialogueFactory(project=project, author=author)
    client = client_for(staff_manager)
    client.post(
        "/admin/annotation/dialogue/",
        {"action": "accept_selected", "_selected_action": [waiting[0].id, waiting[1].id, draft.id]},
    )
    client.post(
        "/admin/annotation/dialogue/", {"action": "reject_selected", "_selected_action": [waiting[2].id]}
    )
    statuses = {d.id: d.status for d in Dialogue.objects.all()}
    assert [statuses[d.id] for d in waiting] == ["accepted", "accepted", "rejected"]
    assert statuses[draft.id] == "draft"
    assert Review.objects.filter(reviewer=staff_manager).count() == 3


class _FormFields(HTMLParser):
    """The values a browser would post from the admin change form (inputs, selects, textareas)."""

    def __init__(self):
        super().__init__()
        self.fields: dict[str, str] = {}
        self._select = self._textarea = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "button", "file"):
            if attrs.get("type") != "checkbox" or "checked" in attrs:
                self.fields[name] = attrs.get("value", "on" if attrs.get("type") == "checkbox" else "")
        elif tag == "select" and name:
            self._select = name
            self.fields.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in attrs:
            self.fields[self._select] = attrs.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.fields[name] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.fields[self._textarea] += data.removeprefix("\n")


def admin_change_form(client, dialogue) -> dict[str, str]:
    parser = _FormFields()
    parser.feed(client.get(f"/admin/annotation/dialogue/{dialogue.id}/change/").content.decode())
    return {name: value for name, value in parser.fields.items() if not name.startswith("_")}


def test_admin_turn_edits_keep_the_editor_rules_and_bump_the_version(project, make_member, staff_manager):
    author = make_member(project)
    dialogue = dialogue_submit(dialogue=DialogueFactory(project=project, author=author), author=author)
    dialogue_review(dialogue=dialogue, reviewer=staff_manager, decision="accept")
    client = client_for(staff_manager)
    url = f"/admin/annotation/dialogue/{dialogue.id}/change/"
    answer = dialogue.turns.get(position=1).content
    dialogue.refresh_from_db()
    version = dialogue.version
    data = admin_change_form(client, dialogue)
    assert data["status"] == "accepted" and data["turns-TOTAL_FORMS"] == "2"

    # an accepted dialogue whose answer is emptied would reach the SFT export: refused, nothing saved
    refused = client.post(url, {**data, "turns-1-content": "   "})
    assert refused.status_code == 200 and "turn 2 (assistant) is empty" in refused.content.decode()
    # two user turns in a row
    refused = client.post(url, {**data, "turns-1-role": "user"})
    assert "turn 2 should be an assistant turn" in refused.content.decode()
    dialogue.refresh_from_db()
    assert dialogue.turns.get(position=1).content == answer
    assert dialogue.version == version

    # a fix of the answer's wording is saved, and an editor tab open on the old turns now conflicts
    saved = client.post(url, {**data, "turns-1-content": "Paris is the capital of France."})
    assert saved.status_code == 302
    dialogue.refresh_from_db()
    assert dialogue.turns.get(position=1).content == "Paris is the capital of France."
    assert dialogue.version == version + 1

    # a draft may be unfinished, but only the first turn may be a system turn
    draft = DialogueFactory(project=project, author=author)
    data = admin_change_form(client, draft)
    assert client.post(f"/admin/annotation/dialogue/{draft.id}/change/", {**data, "turns-1-content": ""}).status_code == 302
    refused = client.post(f"/admin/annotation/dialogue/{draft.id}/change/", {**data, "turns-1-role": "system"})
    assert "only the first turn may be a system turn" in refused.content.decode()


# --- command --------------------------------------------------------------------------------------------------


def test_import_command_reads_a_file_and_prints_figures(project, make_member, capsys):
    manager = make_member(project, Role.MANAGER)
    fixture = Path(__file__).parent / "fixtures" / "hh_rlhf_small.jsonl"
    call_command(
        "import_project_file", str(fixture), project=project.slug, format="hh-rlhf", user=manager.username
    )
    report = json.loads(capsys.readouterr().out)
    assert (report["rows"], report["created"]) == (5, 4) and report["seconds"] >= 0
    assert Dialogue.objects.filter(status=DialogueStatus.ACCEPTED).count() == 4
    with pytest.raises(CommandError, match="No project"):
        call_command(
            "import_project_file", str(fixture), project="nope", format="hh-rlhf", user=manager.username
        )


@pytest.mark.parametrize(
    "path",
    [
        "/admin/annotation/dialogue/",
        "/admin/annotation/prompt/",
        "/admin/annotation/review/",
        "/admin/annotation/membership/",
        "/admin/annotation/guideline/",
        "/admin/ranking/rankingtask/",
        "/admin/ranking/ranking/",
        "/admin/ranking/lease/",
        "/admin/ranking/skip/",
    ],
)
def test_admin_filters_of_a_staff_manager_name_only_projects_they_manage(project, make_member, staff_manager, path):
    staff_manager.user_permissions.add(*Permission.objects.filter(content_type__app_label="ranking"))
    DialogueFactory(project=project, author=make_member(project))
    ProjectFactory(name="Secret acquisition")
    response = client_for(staff_manager).get(path)
    assert response.status_code == 200
    assert "Secret acquisition" not in response.content.decode()


def test_admin_dialogue_list_costs_the_same_queries_for_any_number_of_rows(
    project, make_member, staff_manager, django_assert_max_num_queries
):
    author = make_member(project)
    for index in range(30):
        DialogueFactory(project=project, author=author, turns=[TurnData(role="user", content=f"Opening {index}")])
    client = client_for(staff_manager)
    with django_assert_max_num_queries(20):
        listing = client.get("/admin/annotation/dialogue/").content.decode()
    assert "Opening 0" in listing and "Opening 29" in listing
