"""Every kind of audited action leaves its event, whether it came through the API, a page or admin; managers
read their project's trail on a page and through the API, admins in Django admin, and nobody edits it."""

import json

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from annotation.models import Membership, Role
from annotation.services.projects import membership_set
from audit.models import AuditAction, AuditEvent
from audit.services import audit_record
from tests.factories import PASSWORD, ProjectFactory, UserFactory
from tests.training.test_api import make_model, make_run, make_snapshot
from training.models import RunState, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(project, make_member):
    return make_member(project, Role.MANAGER, username="mia-manager")


@pytest.fixture
def engineer(project, make_member):
    user = make_member(project, Role.LABELER, username="eli-engineer")
    user.user_permissions.add(Permission.objects.get(codename="use_training_api"))
    return user


def only_event(project, action) -> AuditEvent:
    events = list(AuditEvent.objects.filter(project_id=project.pk, action=action))
    assert len(events) == 1, [str(e) for e in AuditEvent.objects.all()]
    return events[0]


def page_client(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


# ---- exports ----


def test_an_sft_export_names_who_downloaded_it(api_client_for, project, manager):
    response = api_client_for(manager).get(f"/api/projects/{project.pk}/export/sft.jsonl")
    assert response.status_code == 200
    event = only_event(project, AuditAction.EXPORT)
    assert (event.actor_id, event.actor_name) == (manager.pk, "mia-manager")
    assert event.details["format"] == "sft.jsonl" and event.details["rows"] == 0


@pytest.mark.parametrize(("path", "fmt"), [("preferences.jsonl?pairs=consensus", "preferences.jsonl"),
                                           ("hh-rlhf.jsonl", "hh-rlhf.jsonl")])
def test_a_preference_export_names_who_and_what(api_client_for, project, engineer, path, fmt):
    response = api_client_for(engineer).get(f"/api/projects/{project.pk}/export/{path}")
    assert response.status_code == 200
    b"".join(response.streaming_content)
    event = only_event(project, AuditAction.EXPORT)
    assert event.actor_id == engineer.pk and event.details["format"] == fmt
    assert event.details["pairs"] == ("consensus" if "consensus" in path else "labeler")


def test_a_refused_export_records_nothing(api_client_for, project, make_member):
    labeler = make_member(project, Role.LABELER)
    assert api_client_for(labeler).get(f"/api/projects/{project.pk}/export/sft.jsonl").status_code == 404
    assert not AuditEvent.objects.exists()


def test_a_snapshot_download_is_an_export(api_client_for, project, engineer, settings, tmp_path):
    settings.DATA_ROOT = tmp_path
    snapshot = make_snapshot(project, data_root=tmp_path)
    response = api_client_for(engineer).get(f"/api/snapshots/{snapshot.pk}/download/")
    assert response.status_code == 200
    event = only_event(project, AuditAction.EXPORT)
    assert (event.object_type, event.object_id) == ("training.datasetsnapshot", str(snapshot.pk))
    assert event.details["rows"] == 1 and event.actor_id == engineer.pk


# ---- imports ----


def test_a_prompt_import_through_the_api_names_the_file_and_the_counts(api_client_for, project, manager):
    upload = SimpleUploadedFile("prompts.jsonl", b'{"prompt": "Hi?"}\n{"prompt": "Why?"}\n')
    response = api_client_for(manager).post(f"/api/projects/{project.pk}/import/",
                                            {"file": upload, "format": "prompts-jsonl"}, format="multipart")
    assert response.status_code == 201, response.json()
    event = only_event(project, AuditAction.IMPORT)
    assert event.actor_id == manager.pk
    assert event.details == {"file": "prompts.jsonl", "format": "prompts-jsonl", "rows": 2, "created": 2}


def test_an_import_from_the_page_is_recorded_and_a_refused_one_is_not(project, manager):
    client = page_client(manager)
    bad = SimpleUploadedFile("bad.jsonl", b"not json\n")
    assert client.post(f"/projects/{project.pk}/data/", {"file": bad, "format": "prompts-jsonl"}).status_code == 400
    assert not AuditEvent.objects.exists()  # all or nothing: the event rolls back with the rows
    good = SimpleUploadedFile("good.jsonl", b'{"prompt": "Hello?"}\n')
    assert client.post(f"/projects/{project.pk}/data/", {"file": good, "format": "prompts-jsonl"}).status_code == 200
    assert only_event(project, AuditAction.IMPORT).details["created"] == 1


def test_a_ranking_import_names_the_tasks_it_made(api_client_for, project, manager):
    line = json.dumps({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go."})
    upload = SimpleUploadedFile("pairs.jsonl", (line + "\n").encode())
    response = api_client_for(manager).post("/api/ranking-tasks/import/",
                                            {"project": project.pk, "format": "hh-rlhf", "file": upload},
                                            format="multipart")
    assert response.status_code == 201, response.json()
    event = only_event(project, AuditAction.IMPORT)
    assert event.actor_id == manager.pk and event.details["format"] == "hh-rlhf"
    assert event.details["tasks_created"] == 1 and event.details["file"] == "pairs.jsonl"


# ---- memberships ----


def test_membership_set_records_a_new_member_then_a_role_change(project, manager):
    user = UserFactory(username="lena")
    membership_set(project=project, user=user, role=Role.LABELER, changed_by=manager)
    membership_set(project=project, user=user, role=Role.REVIEWER, changed_by=manager)
    membership_set(project=project, user=user, role=Role.REVIEWER, changed_by=manager)  # no change: no event

    added = only_event(project, AuditAction.MEMBER_ADD)
    changed = only_event(project, AuditAction.ROLE_CHANGE)
    assert added.details == {"user": "lena", "role": "labeler"} and added.actor_id == manager.pk
    assert changed.details == {"user": "lena", "role": "reviewer", "previous_role": "labeler"}


def test_admin_role_changes_and_removals_are_recorded(project):
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = page_client(admin)
    member = Membership.objects.create(project=project, user=UserFactory(username="sam"), role=Role.LABELER)

    response = client.post(f"/admin/annotation/membership/{member.pk}/change/",
                           {"user": member.user_id, "project": project.pk, "role": Role.MANAGER})
    assert response.status_code == 302
    response = client.post(f"/admin/annotation/membership/{member.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302

    changed = only_event(project, AuditAction.ROLE_CHANGE)
    removed = only_event(project, AuditAction.MEMBER_REMOVE)
    assert changed.actor_id == admin.pk and changed.details["previous_role"] == "labeler"
    assert removed.details == {"user": "sam", "role": "manager"} and removed.object_id == str(member.pk)
    assert not Membership.objects.filter(pk=member.pk).exists()


def test_members_added_in_the_project_admin_page_are_recorded(project):
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    newcomer = UserFactory(username="nia")
    prefix = "memberships"
    form = {
        "name": project.name, "slug": project.slug, "description": "", "demonstrations_per_prompt": 1,
        "accepts_required": 1, "responses_per_task": 4, "rankings_per_task": 3, "gold_rate": 0,
        "lease_minutes": 30,
        f"{prefix}-TOTAL_FORMS": 1, f"{prefix}-INITIAL_FORMS": 0, f"{prefix}-MIN_NUM_FORMS": 0,
        f"{prefix}-MAX_NUM_FORMS": 1000, f"{prefix}-0-user": newcomer.pk, f"{prefix}-0-role": Role.REVIEWER,
        "guidelines-TOTAL_FORMS": 0, "guidelines-INITIAL_FORMS": 0, "guidelines-MIN_NUM_FORMS": 0,
        "guidelines-MAX_NUM_FORMS": 1000,
    }
    response = page_client(admin).post(f"/admin/annotation/project/{project.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    event = only_event(project, AuditAction.MEMBER_ADD)
    assert event.details == {"user": "nia", "role": "reviewer"} and event.actor_id == admin.pk


# ---- models and runs ----


def test_a_promotion_names_the_model_the_role_and_the_reason(api_client_for, project, engineer):
    model = make_model(project, name="sft-v2")
    response = api_client_for(engineer).post(f"/api/models/{model.pk}/promote/", {"reason": "wins 61 %"}, format="json")
    assert response.status_code == 200
    event = only_event(project, AuditAction.MODEL_PROMOTE)
    assert (event.object_type, event.object_id, event.actor_id) == ("training.modelversion", str(model.pk), engineer.pk)
    assert event.details == {"role": "policy", "previous": None, "automatic": False, "reason": "wins 61 %"}


def test_a_run_triggered_cancelled_and_resumed_leaves_three_events(api_client_for, project, engineer):
    api = api_client_for(engineer)
    base, snapshot = make_model(project), make_snapshot(project)
    response = api.post("/api/runs/", {"project": project.pk, "kind": "sft", "input_model": base.pk,
                                       "snapshot": snapshot.pk}, format="json")
    assert response.status_code == 202, response.json()
    run_id = response.json()["id"]
    assert api.post(f"/api/runs/{run_id}/cancel/").status_code == 202
    assert api.post(f"/api/runs/{run_id}/resume/").status_code == 202

    events = AuditEvent.objects.filter(project_id=project.pk, object_id=str(run_id)).order_by("id")
    assert [(e.action, e.actor_id) for e in events] == [
        (AuditAction.RUN_TRIGGER, engineer.pk), (AuditAction.RUN_CANCEL, engineer.pk), (AuditAction.RUN_RESUME, engineer.pk)]
    assert events[0].details == {"kind": "sft", "trigger": "manual"}
    assert events[1].details == {"state": "cancelled"}


def test_admin_actions_on_runs_are_recorded(project):
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    run = make_run(project, state=RunState.RUNNING)
    response = page_client(admin).post("/admin/training/trainingrun/",
                                       {"action": "cancel_selected", "_selected_action": [run.pk]})
    assert response.status_code == 302
    assert only_event(project, AuditAction.RUN_CANCEL).actor_id == admin.pk
    assert TrainingRun.objects.get(pk=run.pk).cancel_requested


def test_a_run_the_platform_starts_by_itself_has_no_actor(project):
    from training.services.runs import run_trigger

    run = run_trigger(project=project, kind="sft", input_model=make_model(project), snapshot=make_snapshot(project),
                      trigger="loop")
    event = only_event(project, AuditAction.RUN_TRIGGER)
    assert event.actor_id is None and event.object_id == str(run.pk) and event.details["trigger"] == "loop"


# ---- who reads the trail ----


@pytest.fixture
def trail(project, manager):
    """Three events in the project, one in another project."""
    for action in (AuditAction.IMPORT, AuditAction.EXPORT, AuditAction.EXPORT):
        audit_record(actor=manager, action=action, project=project, obj=project, details={"format": "x"})
    audit_record(actor=None, action=AuditAction.EXPORT, project=ProjectFactory(), details={"secret": "elsewhere"})


def test_managers_list_their_projects_trail_newest_first_paginated(api_client_for, project, manager, trail):
    api = api_client_for(manager)
    first = api.get(f"/api/projects/{project.pk}/audit/?limit=2").json()
    assert first["count"] == 3 and len(first["results"]) == 2 and first["next"]
    ids = [row["id"] for row in first["results"]] + [row["id"] for row in api.get(first["next"]).json()["results"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 3
    assert first["results"][0]["actor_name"] == "mia-manager" and first["results"][0]["action"] == "export"
    exports = api.get(f"/api/projects/{project.pk}/audit/?action=export").json()
    assert exports["count"] == 2
    assert api.get(f"/api/projects/{project.pk}/audit/?action=rename").status_code == 400


@pytest.mark.parametrize("role", [Role.LABELER, Role.REVIEWER, None])
def test_nobody_but_managers_reads_a_projects_trail(api_client_for, project, make_member, trail, role):
    user = make_member(project, role) if role else UserFactory()
    assert api_client_for(user).get(f"/api/projects/{project.pk}/audit/").status_code == 404
    assert page_client(user).get(f"/projects/{project.pk}/audit/").status_code == 404


def test_the_audit_page_lists_the_events_and_filters_them(project, manager, trail):
    client = page_client(manager)
    page = client.get(f"/projects/{project.pk}/audit/").content.decode()
    assert page.count('data-action="export"') == 2 and page.count('data-action="import"') == 1
    assert "elsewhere" not in page and "mia-manager" in page
    filtered = client.get(f"/projects/{project.pk}/audit/?action=import").content.decode()
    assert filtered.count("data-event=") == 1
    assert f'href="/projects/{project.pk}/audit/"' in client.get(f"/projects/{project.pk}/").content.decode()


def test_admin_shows_the_trail_to_superusers_and_lets_nobody_edit_it(project, manager, trail):
    admin = page_client(UserFactory(username="root", is_staff=True, is_superuser=True))
    event = AuditEvent.objects.filter(project_id=project.pk).first()
    assert admin.get("/admin/audit/auditevent/").status_code == 200
    assert admin.get(f"/admin/audit/auditevent/{event.pk}/change/").status_code == 200  # a read-only view
    assert admin.get("/admin/audit/auditevent/add/").status_code == 403
    assert admin.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin.post(f"/admin/audit/auditevent/{event.pk}/change/", {"actor_name": "x"}).status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).actor_name == "mia-manager"
    assert not Permission.objects.filter(content_type__app_label="audit").exclude(codename="view_auditevent").exists()
    manager.is_staff = True
    manager.save(update_fields=["is_staff"])
    assert page_client(manager).get("/admin/audit/auditevent/").status_code == 403


def test_deleting_a_users_membership_in_bulk_from_admin_is_recorded_per_member(project):
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    members = [Membership.objects.create(project=project, user=UserFactory(), role=Role.LABELER) for _ in range(2)]
    response = page_client(admin).post("/admin/annotation/membership/", {
        "action": "delete_selected", "_selected_action": [m.pk for m in members], "post": "yes"})
    assert response.status_code == 302
    assert AuditEvent.objects.filter(project_id=project.pk, action=AuditAction.MEMBER_REMOVE).count() == 2


