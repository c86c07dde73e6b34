"""Django admin keeps a staff manager inside the projects they manage: rows, choices, initial values, saves."""

import pytest
from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.test import RequestFactory

from annotation.admin_scoping import ManagedProjectsAdminMixin, project_path
from annotation.models import Role
from ranking.models import Lease, Ranking, Response, Skip
from ranking.services.rankings import ranking_submit
from tests.annotation.factories import DialogueFactory, PromptFactory
from tests.factories import ProjectFactory, UserFactory
from tests.ranking.factories import RankingTaskFactory, response_ids
from tests.training.factories import DatasetSnapshotFactory, ModelVersionFactory, TrainingRunFactory

pytestmark = pytest.mark.django_db

SCOPED_APPS = {"annotation", "ranking", "training"}


def _scoped_admins(manager):
    """The admins of the apps that a staff manager can open (a superuser-only one, API tokens', is left out)."""
    request = _request(manager)
    return [(model, model_admin) for model, model_admin in admin.site._registry.items()
            if model._meta.app_label in SCOPED_APPS
            and (model_admin.has_module_permission(request) or model_admin.has_view_permission(request))]


@pytest.fixture
def world(make_member):
    """Projects A (managed by a staff user) and B (not), each with a row of every kind admin offers as a choice."""
    rows = {}
    for name in ("a", "b"):
        project = ProjectFactory(name=f"Project {name.upper()}")
        labeler = make_member(project, Role.LABELER, username=f"labeler-{name}")
        task = RankingTaskFactory(project=project, answers=[f"{name} first answer", f"{name} second answer"])
        ranking = ranking_submit(task=task, labeler=labeler, order=[[i] for i in response_ids(task)]).ranking
        prompt = PromptFactory(project=project, text=f"Secret prompt text of project {name.upper()}")
        rows[name] = {
            "project": project, "labeler": labeler, "task": task, "ranking": ranking, "prompt": prompt,
            "dialogue": DialogueFactory(project=project, author=labeler, prompt=prompt),
            "model": ModelVersionFactory(project=project),
            "snapshot": DatasetSnapshotFactory(project=project),
            "run": TrainingRunFactory(project=project),
        }
    manager = make_member(rows["a"]["project"], Role.MANAGER, username="manager-a")
    manager.is_staff = True
    manager.save()
    manager.user_permissions.add(
        *Permission.objects.filter(content_type__app_label__in=sorted(SCOPED_APPS)),
        Permission.objects.get(codename="view_user", content_type__app_label="auth"),
    )
    rows["manager"] = get_user_model().objects.get(pk=manager.pk)  # permissions are cached per instance
    return rows


@pytest.fixture
def manager_client(client, world):
    client.force_login(world["manager"])
    return client


def _request(user, path="/admin/", data=None):
    request = RequestFactory().get(path, data or {})
    request.user = user
    return request


def test_every_admin_and_inline_a_manager_can_open_uses_the_mixin(world):
    missing = []
    for _model, model_admin in _scoped_admins(world["manager"]):
        if not isinstance(model_admin, ManagedProjectsAdminMixin):
            missing.append(type(model_admin).__name__)
        missing += [inline.__name__ for inline in model_admin.inlines if not issubclass(inline, ManagedProjectsAdminMixin)]
    assert not missing, f"add annotation.admin_scoping.ManagedProjectsAdminMixin to: {', '.join(missing)}"


def test_every_foreign_key_choice_of_every_admin_stays_in_the_managed_projects(world):
    request = _request(world["manager"])
    b, b_labeler = world["b"]["project"], world["b"]["labeler"]
    checked = 0
    for _model, model_admin in _scoped_admins(world["manager"]):
        # the forms the admin would show: an add page, and a change page of one of the manager's rows
        form_classes = []
        own = model_admin.get_queryset(request).first()
        for obj in [None, own] if own is not None else [None]:
            may = model_admin.has_add_permission(request) if obj is None else model_admin.has_change_permission(request, obj)
            if not may:
                continue
            form_classes.append((type(model_admin).__name__, model_admin.get_form(request, obj, change=obj is not None), model_admin))
            for inline in model_admin.get_inline_instances(request, obj):
                form_classes.append((type(inline).__name__, inline.get_formset(request, obj).form, inline))
        for owner, form_class, where in form_classes:
            for name, field in form_class.base_fields.items():
                if not isinstance(field, forms.ModelChoiceField):
                    continue
                related = field.queryset.model
                path = project_path(related)
                if path is not None:
                    in_b = {path: b} if path else {"pk": b.pk}
                    assert related._default_manager.filter(**in_b).exists(), (
                        f"give project B a {related.__name__} in the fixture, to check {owner}.{name}"
                    )
                    assert not field.queryset.filter(**in_b).exists(), f"{owner}.{name} offers project B's rows"
                    checked += 1
                elif related is get_user_model() and name not in where.any_user_fields:
                    assert not field.queryset.filter(pk=b_labeler.pk).exists(), f"{owner}.{name} offers B's people"
                    checked += 1
    assert checked >= 10


def test_every_initial_value_of_another_project_is_dropped(world):
    b = world["b"]
    for model, model_admin in _scoped_admins(world["manager"]):
        for field in model._meta.get_fields():
            if not (field.concrete and field.is_relation) or field.related_model is None:
                continue
            if field.name in model_admin.any_user_fields:
                continue  # a new member is picked from everyone
            theirs = next((row for row in b.values() if type(row) is field.related_model), None)
            if theirs is None:
                continue
            initial = model_admin.get_changeform_initial_data(_request(world["manager"], data={field.name: theirs.pk}))
            assert field.name not in initial, f"{type(model_admin).__name__} starts {field.name} at B's row"


def test_add_pages_do_not_name_another_projects_prompt_or_task(manager_client, world):
    a, b = world["a"], world["b"]
    html = manager_client.get(f"/admin/annotation/dialogue/add/?prompt={b['prompt'].pk}").content.decode()
    assert b["prompt"].text not in html
    html = manager_client.get(f"/admin/annotation/dialogue/add/?prompt={a['prompt'].pk}").content.decode()
    assert a["prompt"].text in html  # the manager's own prompt is still named
    html = manager_client.get(f"/admin/ranking/lease/add/?task={b['task'].pk}").content.decode()
    assert "Project B" not in html and str(b["task"]) not in html


@pytest.mark.parametrize("model, path, extra", [
    (Lease, "/admin/ranking/lease/add/", {"expires_at_0": "2030-01-01", "expires_at_1": "12:00:00"}),
    (Skip, "/admin/ranking/skip/add/", {"reason": "probe"}),
])
def test_leases_and_skips_can_not_be_added_to_another_projects_task(manager_client, world, model, path, extra):
    b = world["b"]
    response = manager_client.post(path, {"task": b["task"].pk, "labeler": world["a"]["labeler"].pk, **extra})
    assert response.status_code == 200  # the form again, with its error
    assert not model.objects.filter(task=b["task"]).exists()
    assert "Project B" not in response.content.decode()
    # the manager's own task works
    response = manager_client.post(path, {"task": world["a"]["task"].pk, "labeler": world["a"]["labeler"].pk, **extra})
    assert response.status_code == 302 and model.objects.filter(task=world["a"]["task"]).exists()


def test_a_ranking_can_not_be_moved_into_another_project_from_its_change_page(manager_client, world):
    ranking = world["a"]["ranking"]
    html = manager_client.get(f"/admin/ranking/ranking/{ranking.pk}/change/").content.decode()
    assert 'name="task"' not in html  # read only once saved
    response = manager_client.post(f"/admin/ranking/ranking/{ranking.pk}/change/", {
        "task": world["b"]["task"].pk, "labeler": world["b"]["labeler"].pk, "order": ranking.order,
        "flags": "{}", "scores": "{}", "time_spent_ms": 0, "idempotency_key": "",
    })
    assert response.status_code in (200, 302)
    ranking.refresh_from_db()
    assert ranking.task_id == world["a"]["task"].pk and not world["b"]["task"].rankings.exclude(
        labeler=world["b"]["labeler"]).exists()


def test_a_rankings_order_edited_in_admin_must_rank_its_own_answers(manager_client, world):
    ranking = world["a"]["ranking"]
    foreign = response_ids(world["b"]["task"])
    response = manager_client.post(f"/admin/ranking/ranking/{ranking.pk}/change/", {
        "order": str([[i] for i in foreign]), "flags": "{}", "scores": "{}", "time_spent_ms": 0, "idempotency_key": "",
    })
    assert response.status_code == 200 and "not answers of this task" in response.content.decode()
    ranking.refresh_from_db()
    assert sorted(i for group in ranking.order for i in group) == response_ids(world["a"]["task"])


def test_autocomplete_lists_only_managed_projects(manager_client, world):
    response = manager_client.get("/admin/autocomplete/", {
        "app_label": "annotation", "model_name": "membership", "field_name": "project", "term": "Project",
    })
    names = [result["text"] for result in response.json()["results"]]
    assert names == ["Project A"]


def test_user_autocomplete_lists_members_of_managed_projects_except_when_adding_a_member(manager_client, world):
    def usernames(model_name, field_name):
        response = manager_client.get("/admin/autocomplete/", {
            "app_label": "annotation", "model_name": model_name, "field_name": field_name, "term": "labeler",
        })
        assert response.status_code == 200
        return {result["text"] for result in response.json()["results"]}

    assert usernames("dialogue", "author") == {"labeler-a"}
    assert usernames("membership", "user") == {"labeler-a", "labeler-b"}  # a new member may come from anywhere


def test_a_save_outside_the_managed_projects_is_refused_even_when_the_form_allows_it(world):
    from django.core.exceptions import PermissionDenied

    from ranking.admin import SkipAdmin

    model_admin = SkipAdmin(Skip, admin.site)
    request = _request(world["manager"])
    skip = Skip(task=world["b"]["task"], labeler=world["b"]["labeler"])

    class LooseForm(forms.ModelForm):  # as if a choice had slipped past the scoped fields
        class Meta:
            model = Skip
            fields = ["task", "labeler", "reason"]

    form = LooseForm(data={"task": skip.task_id, "labeler": skip.labeler_id, "reason": ""}, instance=Skip())
    assert form.is_valid()
    with pytest.raises(PermissionDenied):
        model_admin.save_form(request, form, change=False)
    assert not Skip.objects.exists()


def test_superusers_still_choose_from_every_project(client, world):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    html = client.get(f"/admin/annotation/dialogue/add/?prompt={world['b']['prompt'].pk}").content.decode()
    assert world["b"]["prompt"].text in html


# --- the model refuses what admin used to let through -------------------------------------------------


@pytest.mark.parametrize("model, path, extra", [
    (Lease, "/admin/ranking/lease/add/", {"expires_at_0": "2030-01-01", "expires_at_1": "12:00:00"}),
    (Skip, "/admin/ranking/skip/add/", {"reason": "probe"}),
])
def test_a_lease_or_skip_is_only_for_a_member_of_the_tasks_project(client, world, model, path, extra):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))  # whose choices are not scoped
    response = client.post(path, {"task": world["a"]["task"].pk, "labeler": world["b"]["labeler"].pk, **extra})
    assert response.status_code == 200 and "not a member of the task" in response.content.decode()
    assert not model.objects.exists()
    with pytest.raises(ValidationError, match="not a member"):
        model(task=world["a"]["task"], labeler=world["b"]["labeler"], **(
            {"expires_at": world["a"]["task"].created_at} if model is Lease else {})).full_clean()


def test_a_saved_ranking_or_answer_can_not_move_to_another_task(world):
    ranking = Ranking.objects.get(pk=world["a"]["ranking"].pk)
    ranking.task = world["b"]["task"]
    with pytest.raises(ValidationError, match="can't move to another task"):
        ranking.full_clean()
    with pytest.raises(ValidationError, match="can't move to another task"):
        ranking.save()
    answer = Response.objects.filter(task=world["a"]["task"]).first()
    answer.task = world["b"]["task"]
    with pytest.raises(ValidationError, match="can't move to another task"):
        answer.save()
    assert Response.objects.filter(task=world["a"]["task"]).count() == 2


def test_a_ranking_whose_ids_are_not_its_tasks_answers_is_refused(world):
    task, other = world["a"]["task"], world["b"]["task"]
    foreign = [[i] for i in response_ids(other)]
    bad = Ranking(task=task, labeler=world["manager"], order=foreign)
    with pytest.raises(ValidationError, match="not answers of this task"):
        bad.full_clean()
    with pytest.raises(ValidationError, match="not answers of this task"):
        bad.save()
    own = [[i] for i in response_ids(task)]
    with pytest.raises(ValidationError, match="flags"):
        Ranking(task=task, labeler=world["manager"], order=own, flags={str(foreign[0][0]): ["harmful"]}).save()
    Ranking(task=task, labeler=world["manager"], order=own).save()  # its own answers are fine
