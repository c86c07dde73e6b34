"""The demonstrations API: life cycle, version conflicts, the prompt queue and the permission matrix."""

import pytest

from annotation.models import Dialogue, DialogueStatus, Role
from annotation.services.dialogues import dialogue_submit
from tests.annotation.factories import DialogueFactory, PromptFactory
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db

THREE_TURNS = [
    {"role": "system", "content": "You are concise."},
    {"role": "user", "content": "2 + 2?"},
    {"role": "assistant", "content": "4."},
]


def test_whole_life_cycle_through_the_api(project, make_member, api_client_for):
    labeler, reviewer = make_member(project), make_member(project, Role.REVIEWER)
    as_labeler, as_reviewer = api_client_for(labeler), api_client_for(reviewer)

    created = as_labeler.post(
        "/api/dialogues/", {"project": project.id, "turns": THREE_TURNS[:2]}, format="json"
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["status"], body["version"], body["author"]) == ("draft", 1, labeler.username)

    url = f"/api/dialogues/{body['id']}/"
    premature = as_labeler.post(f"{url}submit/", {}, format="json")
    assert (
        premature.status_code == 400
        and premature.json()["detail"] == "The last turn must be the assistant's."
    )

    saved = as_labeler.patch(url, {"version": 1, "turns": THREE_TURNS}, format="json")
    assert saved.status_code == 200 and saved.json()["version"] == 2
    submitted = as_labeler.post(f"{url}submit/", {"version": 2}, format="json")
    assert submitted.status_code == 200 and submitted.json()["status"] == "submitted"

    queue = as_reviewer.get(f"/api/dialogues/review-queue/?project={project.id}").json()
    assert [d["id"] for d in queue["results"]] == [body["id"]]
    rejected = as_reviewer.post(
        f"{url}review/", {"decision": "reject", "comment": "Explain it."}, format="json"
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"

    mine = as_labeler.get("/api/dialogues/?status=rejected").json()
    assert mine["count"] == 1 and mine["results"][0]["rejection_comment"] == "Explain it."

    revised_turns = THREE_TURNS[:2] + [{"role": "assistant", "content": "2 + 2 = 4."}]
    version = mine["results"][0]["version"]
    revised = as_labeler.put(url, {"version": version, "turns": revised_turns}, format="json")
    assert revised.json()["status"] == "revised"
    assert as_labeler.post(f"{url}submit/", {}, format="json").json()["round"] == 2
    accepted = as_reviewer.post(f"{url}review/", {"decision": "accept"}, format="json")
    assert accepted.json()["status"] == "accepted"
    assert [r["decision"] for r in accepted.json()["reviews"]] == ["accept", "reject"]


def test_a_stale_save_answers_409_with_a_message(project, make_member, api_client_for):
    labeler = make_member(project)
    client = api_client_for(labeler)
    dialogue = client.post(
        "/api/dialogues/", {"project": project.id, "turns": THREE_TURNS}, format="json"
    ).json()
    url = f"/api/dialogues/{dialogue['id']}/"
    tab_a = client.patch(url, {"version": 1, "turns": THREE_TURNS[:2]}, format="json")
    assert tab_a.status_code == 200
    tab_b = client.patch(url, {"version": 1, "turns": THREE_TURNS[:1]}, format="json")
    assert tab_b.status_code == 409
    assert "changed elsewhere" in tab_b.json()["detail"] and tab_b.json()["current_version"] == 2
    assert len(client.get(url).json()["turns"]) == 2


def test_server_side_limits_answer_400(project, make_member, api_client_for):
    client = api_client_for(make_member(project))
    too_long = [{"role": "user", "content": "x" * 8001}]
    response = client.post("/api/dialogues/", {"project": project.id, "turns": too_long}, format="json")
    assert response.status_code == 400 and "8000" in response.json()["detail"]
    bad_role = [{"role": "narrator", "content": "x"}]
    response = client.post("/api/dialogues/", {"project": project.id, "turns": bad_role}, format="json")
    assert response.status_code == 400 and "narrator" in response.json()["detail"]
    too_many = [{"role": "user", "content": "x"}] * 41
    response = client.post("/api/dialogues/", {"project": project.id, "turns": too_many}, format="json")
    assert response.status_code == 400


def test_next_prompt_leases_then_answers_204_when_the_queue_is_done(project, make_member, api_client_for):
    prompt = PromptFactory(project=project, text="Say hi.")
    first, second = api_client_for(make_member(project)), api_client_for(make_member(project))
    leased = first.post(f"/api/dialogues/next-prompt/?project={project.id}")
    assert leased.status_code == 201
    assert leased.json()["prompt"] == {"id": prompt.id, "text": "Say hi."}
    assert leased.json()["lease_expires_at"] is not None
    assert (
        first.post(f"/api/dialogues/next-prompt/?project={project.id}").status_code == 200
    )  # same draft back
    assert second.post(f"/api/dialogues/next-prompt/?project={project.id}").status_code == 204
    assert second.post("/api/dialogues/next-prompt/").status_code == 400


def test_prompts_list_and_create_within_my_projects(project, make_member, api_client_for):
    other = ProjectFactory()
    PromptFactory(project=other, text="secret prompt")
    client = api_client_for(make_member(project))
    created = client.post("/api/prompts/", {"project": project.id, "text": "Define entropy."}, format="json")
    assert created.status_code == 201 and created.json()["demonstrations"] == 0
    duplicate = client.post(
        "/api/prompts/", {"project": project.id, "text": "Define  entropy."}, format="json"
    )
    assert duplicate.status_code == 400 and "already" in duplicate.json()["detail"]
    assert [p["text"] for p in client.get("/api/prompts/").json()["results"]] == ["Define entropy."]
    assert client.get(f"/api/prompts/?project={other.id}").json()["count"] == 0
    assert client.post("/api/prompts/", {"project": other.id, "text": "x"}, format="json").status_code == 404


# --- permission matrix ------------------------------------------------------------------------------------
# roles: labeler / reviewer / manager / outsider; objects: own, another labeler's, another project's.


@pytest.fixture
def world(project, make_member):
    other_project = ProjectFactory()
    people = {
        "labeler": make_member(project, Role.LABELER),
        "reviewer": make_member(project, Role.REVIEWER),
        "manager": make_member(project, Role.MANAGER),
        "outsider": make_member(other_project, Role.MANAGER),
        "colleague": make_member(project, Role.LABELER),
    }
    colleague = people["colleague"]
    stranger = make_member(other_project)
    return {
        "people": people,
        "draft": DialogueFactory(project=project, author=colleague),
        "submitted": dialogue_submit(
            dialogue=DialogueFactory(project=project, author=colleague), author=colleague
        ),
        "other_project": dialogue_submit(
            dialogue=DialogueFactory(project=other_project, author=stranger), author=stranger
        ),
    }


READ = {  # who may GET another person's dialogue
    ("labeler", "draft"): 404,
    ("labeler", "submitted"): 404,
    ("labeler", "other_project"): 404,
    ("reviewer", "draft"): 404,
    ("reviewer", "submitted"): 200,
    ("reviewer", "other_project"): 404,
    ("manager", "draft"): 404,
    ("manager", "submitted"): 200,
    ("manager", "other_project"): 404,
    ("outsider", "draft"): 404,
    ("outsider", "submitted"): 404,
}


@pytest.mark.parametrize(("role", "target"), READ)
def test_reading_other_peoples_dialogues(world, api_client_for, role, target):
    client = api_client_for(world["people"][role])
    assert client.get(f"/api/dialogues/{world[target].id}/").status_code == READ[(role, target)]


@pytest.mark.parametrize("role", ["labeler", "reviewer", "manager", "outsider"])
@pytest.mark.parametrize("target", ["draft", "submitted", "other_project"])
def test_nobody_changes_submits_or_discards_another_persons_dialogue(world, api_client_for, role, target):
    client = api_client_for(world["people"][role])
    dialogue = world[target]
    url = f"/api/dialogues/{dialogue.id}/"
    assert (
        client.patch(url, {"version": dialogue.version, "turns": THREE_TURNS}, format="json").status_code
        == 404
    )
    assert client.post(f"{url}submit/", {}, format="json").status_code == 404
    assert client.delete(url).status_code == 404
    dialogue.refresh_from_db()
    assert [t.content for t in dialogue.turns.all()] == ["What is the capital of France?", "Paris."]


REVIEW = {
    ("labeler", "submitted"): 404,
    ("reviewer", "submitted"): 200,
    ("manager", "submitted"): 200,
    ("outsider", "submitted"): 404,
    ("reviewer", "draft"): 404,
    ("reviewer", "other_project"): 404,
    ("manager", "other_project"): 404,
}


@pytest.mark.parametrize(("role", "target"), REVIEW)
def test_who_may_review(world, api_client_for, role, target):
    client = api_client_for(world["people"][role])
    response = client.post(
        f"/api/dialogues/{world[target].id}/review/", {"decision": "accept"}, format="json"
    )
    assert response.status_code == REVIEW[(role, target)]


def test_own_dialogues_the_author_may_read_but_not_review(world, api_client_for):
    colleague = api_client_for(world["people"]["colleague"])
    submitted = world["submitted"]
    assert colleague.get(f"/api/dialogues/{world['draft'].id}/").status_code == 200
    response = colleague.post(f"/api/dialogues/{submitted.id}/review/", {"decision": "accept"}, format="json")
    assert response.status_code == 400  # not a reviewer in this project
    mine = colleague.get("/api/dialogues/").json()
    assert {d["id"] for d in mine["results"]} == {world["draft"].id, submitted.id}


def test_a_reviewer_cannot_review_their_own_submission(project, make_member, api_client_for):
    reviewer = make_member(project, Role.REVIEWER)
    dialogue = dialogue_submit(dialogue=DialogueFactory(project=project, author=reviewer), author=reviewer)
    response = api_client_for(reviewer).post(
        f"/api/dialogues/{dialogue.id}/review/", {"decision": "accept"}, format="json"
    )
    assert response.status_code == 400 and "own" in response.json()["detail"]
    assert api_client_for(reviewer).get("/api/dialogues/review-queue/").json()["count"] == 0


def test_creating_in_a_project_i_dont_belong_to_is_404(world, api_client_for):
    outsider = api_client_for(world["people"]["outsider"])
    response = outsider.post(
        "/api/dialogues/", {"project": world["draft"].project_id, "turns": THREE_TURNS}, format="json"
    )
    assert response.status_code == 404
    assert (
        outsider.post(f"/api/dialogues/next-prompt/?project={world['draft'].project_id}").status_code == 404
    )


def test_anonymous_requests_are_refused(world, api_client_for):
    anonymous = api_client_for(None)
    assert anonymous.get("/api/dialogues/").status_code in (401, 403)
    assert anonymous.get(f"/api/dialogues/{world['submitted'].id}/").status_code in (401, 403)


def test_a_member_removed_from_the_project_loses_access_to_their_dialogues(world, api_client_for):
    colleague = world["people"]["colleague"]
    colleague.memberships.all().delete()
    assert api_client_for(colleague).get(f"/api/dialogues/{world['draft'].id}/").status_code == 404


def test_status_filter_must_be_known(project, make_member, api_client_for):
    client = api_client_for(make_member(project))
    assert client.get("/api/dialogues/?status=bogus").status_code == 400
    assert Dialogue.objects.filter(status=DialogueStatus.DRAFT).count() == 0
