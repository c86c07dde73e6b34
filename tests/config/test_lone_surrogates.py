"""A lone UTF-16 surrogate ("\\ud800" in JSON) is refused where requests and files are parsed: 400, naming where."""

import io

import pytest

from annotation.models import Dialogue, Prompt, Review, Role
from annotation.services.dialogues import dialogue_submit
from config.text import lone_surrogate_path
from ranking.models import Ranking
from tests.annotation.factories import DialogueFactory
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = pytest.mark.django_db

LONE = "\\ud800"  # as it is written in JSON text: the escape, not the code point


def post_raw_json(client, path: str, body: str):
    return client.post(path, body.encode(), content_type="application/json")


def upload(text: str, name: str = "data.jsonl") -> io.BytesIO:
    file = io.BytesIO(text.encode())
    file.name = name
    return file


@pytest.fixture
def manager(project, make_member):
    return make_member(project, Role.MANAGER)


def test_a_dialogue_with_a_lone_surrogate_is_refused_naming_the_field(api_client_for, project, make_member):
    body = f'{{"project": {project.pk}, "turns": [{{"role": "user", "content": "Hello {LONE}"}}]}}'
    response = post_raw_json(api_client_for(make_member(project)), "/api/dialogues/", body)
    assert response.status_code == 400
    assert "turns.0.content" in response.json()["detail"] and "surrogate" in response.json()["detail"]
    assert not Dialogue.objects.exists()


@pytest.mark.parametrize("field, body", [
    ("decision", f'{{"decision": "accept{LONE}"}}'),
    ("comment", f'{{"decision": "reject", "comment": "Why {LONE}"}}'),
])
def test_a_review_decision_with_a_lone_surrogate_is_refused(api_client_for, project, make_member, field, body):
    author = make_member(project)
    dialogue = dialogue_submit(dialogue=DialogueFactory(project=project, author=author), author=author)
    client = api_client_for(make_member(project, Role.REVIEWER))
    response = post_raw_json(client, f"/api/dialogues/{dialogue.pk}/review/", body)
    assert response.status_code == 400 and field in response.json()["detail"]
    assert not Review.objects.exists()


@pytest.mark.parametrize("flags", [f'{{"ID": ["harmful{LONE}"]}}', f'{{"{LONE}": ["harmful"]}}'])
def test_ranking_flags_with_a_lone_surrogate_are_refused(api_client_for, project, make_member, flags):
    task = RankingTaskFactory(project=project, answers=2)
    first, second = response_ids(task)
    body = f'{{"order": [[{first}], [{second}]], "flags": {flags.replace("ID", str(first))}}}'
    response = post_raw_json(api_client_for(make_member(project)), f"/api/ranking-tasks/{task.pk}/rankings/", body)
    assert response.status_code == 400 and "flags" in response.json()["detail"]
    assert not Ranking.objects.exists()


ANNOTATION_LINES = {
    "prompts-jsonl": f'{{"prompt": "Fine."}}\n{{"prompt": "Broken {LONE}"}}\n',
    "messages-jsonl": (
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
        f'{{"messages": [{{"role": "user", "content": "Hi"}}, {{"role": "assistant", "content": "Bad {LONE}"}}]}}\n'
    ),
    "hh-rlhf": (
        '{"chosen": "\\n\\nHuman: Hi\\n\\nAssistant: Hello", "rejected": "\\n\\nHuman: Hi\\n\\nAssistant: No"}\n'
        f'{{"chosen": "\\n\\nHuman: Hi\\n\\nAssistant: Bad {LONE}", "rejected": "\\n\\nHuman: Hi\\n\\nAssistant: No"}}\n'
    ),
}


@pytest.mark.parametrize("fmt", sorted(ANNOTATION_LINES))
def test_demonstration_imports_refuse_a_lone_surrogate_naming_the_line(api_client_for, project, manager, fmt):
    client = api_client_for(manager)
    response = client.post(f"/api/projects/{project.pk}/import/",
                           {"file": upload(ANNOTATION_LINES[fmt]), "format": fmt}, format="multipart")
    assert response.status_code == 400
    assert "line 2" in response.json()["detail"] and "surrogate" in response.json()["detail"]
    assert not Prompt.objects.exists() and not Dialogue.objects.exists()


@pytest.mark.parametrize("fmt", sorted(ANNOTATION_LINES))
def test_the_demonstration_import_page_refuses_a_lone_surrogate(client, project, manager, fmt):
    client.force_login(manager)
    response = client.post(f"/projects/{project.pk}/data/", {"file": upload(ANNOTATION_LINES[fmt]), "format": fmt})
    assert response.status_code == 400
    assert "line 2" in response.content.decode() and "surrogate" in response.content.decode()


def test_a_surrogate_pair_is_text_and_passes(api_client_for, project, make_member):
    body = f'{{"project": {project.pk}, "turns": [{{"role": "user", "content": "Smile \\ud83d\\ude00"}}]}}'
    response = post_raw_json(api_client_for(make_member(project)), "/api/dialogues/", body)
    assert response.status_code == 201, response.content
    assert Dialogue.objects.get().turns.get().content == "Smile \U0001f600"


def test_the_path_names_keys_and_list_items_and_survives_deep_nesting():
    assert lone_surrogate_path({"a": [{"b": "ok"}, {"c": "x\ud800"}]}) == "a.1.c"
    assert lone_surrogate_path({"flags": {"\udc00": []}}) == "flags (a key)"
    assert lone_surrogate_path("\ud800") == ""
    deep: object = "\ud800"
    for _ in range(5000):
        deep = [deep]
    assert lone_surrogate_path(deep).count(".") == 4999
    assert lone_surrogate_path({"fine": ["text", 1, None, {"x": 2.5}]}) is None
