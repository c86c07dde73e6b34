"""Admin of the training app: lists, read-only rows, loop policies edited through the service, actions,
and a staff manager who sees and chooses only their own projects' objects."""

import re

import pytest
from django.contrib.auth.models import Permission

from annotation.models import Role
from tests.factories import ProjectFactory, UserFactory
from tests.training.factories import (
    DatasetSnapshotFactory,
    GpuWorkerFactory,
    ModelVersionFactory,
    SamplingJobFactory,
    TrainingRunFactory,
    metric_points_add,
    trained_model,
)
from training.models import LoopPolicy, ModelKind, Promotion, RunKind, RunState, TrainingRun

pytestmark = pytest.mark.django_db

ADMIN = "/admin/training"
MODELS = ["modelversion", "datasetsnapshot", "trainingrun", "samplingjob", "looppolicy", "promotion", "gpuworker"]


@pytest.fixture
def superuser(client):
    user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(user)
    return user


def _project_with_everything(name: str):
    project = ProjectFactory(name=name)
    base = ModelVersionFactory(project=project, kind=ModelKind.BASE, name=f"{name}-base")
    sft = trained_model(project, kind=ModelKind.SFT, run_kind=RunKind.SFT, name=f"{name}-sft", parent=base)
    job = SamplingJobFactory(project=project, model=sft)
    LoopPolicy.objects.create(project=project, base_model=base, current_policy=sft)
    promotion = Promotion.objects.create(project=project, model=sft, role=Promotion.Role.POLICY, reason=f"{name} up")
    return {"project": project, "modelversion": sft, "datasetsnapshot": sft.snapshot, "trainingrun": sft.run,
            "samplingjob": job, "looppolicy": project.loop_policy, "promotion": promotion}


def _row_ids(html: str, model: str) -> set[str]:
    """The ids of the rows a change list shows (each row links to its change page)."""
    return set(re.findall(rf'href="{ADMIN}/{model}/(\d+)/change/', html))


def test_every_list_loads_with_its_filters_and_search(client, superuser):
    objects = _project_with_everything("alpha")
    GpuWorkerFactory(current_run=objects["trainingrun"])
    for model in MODELS:
        response = client.get(f"{ADMIN}/{model}/")
        assert response.status_code == 200, model
    assert client.get(f"{ADMIN}/trainingrun/", {"state__exact": "succeeded", "kind__exact": "sft"}).status_code == 200
    html = client.get(f"{ADMIN}/modelversion/", {"q": "alpha-sft"}).content.decode()
    assert _row_ids(html, "modelversion") == {str(objects["modelversion"].pk)}
    html = client.get(f"{ADMIN}/samplingjob/", {"run__state__exact": "succeeded"}).content.decode()
    assert _row_ids(html, "samplingjob") == {str(objects["samplingjob"].pk)}


def test_the_platforms_rows_are_read_only_and_none_is_added_in_admin(client, superuser):
    objects = _project_with_everything("alpha")
    worker = GpuWorkerFactory()
    for model in MODELS:
        assert client.get(f"{ADMIN}/{model}/add/").status_code == 403, model
    for model in ["datasetsnapshot", "trainingrun", "samplingjob", "promotion"]:
        html = client.get(f"{ADMIN}/{model}/{objects[model].pk}/change/").content.decode()
        assert 'name="_save"' not in html, model  # a view page, nothing to save
    assert 'name="_save"' not in client.get(f"{ADMIN}/gpuworker/{worker.pk}/change/").content.decode()
    assert client.get(f"{ADMIN}/promotion/{objects['promotion'].pk}/delete/").status_code == 403


def test_a_runs_page_shows_its_newest_metric_points_read_only(client, superuser):
    run = TrainingRunFactory(state=RunState.RUNNING)
    metric_points_add(run, [{"step": step, "loss": 1.0 / step} for step in range(1, 251)])
    html = client.get(f"{ADMIN}/trainingrun/{run.pk}/change/").content.decode()
    assert "metric points (the newest 200)" in html.lower()
    assert html.count('class="field-step"') == 200  # steps 51 to 250
    assert ">250<" in html and ">51<" in html and ">50<" not in html
    assert f'href="/projects/{run.project_id}/training/runs/{run.pk}/"' in html


def test_runs_are_cancelled_and_resumed_from_the_list(client, superuser):
    queued = TrainingRunFactory(state=RunState.QUEUED, finished_at=None, started_at=None)
    running = TrainingRunFactory(state=RunState.RUNNING, finished_at=None)
    failed = TrainingRunFactory(state=RunState.FAILED, error="boom")
    client.post(f"{ADMIN}/trainingrun/", {"action": "cancel_selected", "_selected_action": [queued.pk, running.pk]})
    assert TrainingRun.objects.get(pk=queued.pk).state == RunState.CANCELLED
    running.refresh_from_db()
    assert running.state == RunState.RUNNING and running.cancel_requested
    client.post(f"{ADMIN}/trainingrun/", {"action": "resume_selected", "_selected_action": [failed.pk]})
    failed.refresh_from_db()
    assert failed.state == RunState.QUEUED and failed.error == ""


def _policy_form(policy, **changes) -> dict:
    data = {
        "enabled": "on" if policy.enabled else "", "base_model": policy.base_model_id or "",
        "preference_method": policy.preference_method, "auto_promote": "on" if policy.auto_promote else "",
        "sft_min_new_demonstrations": policy.sft_min_new_demonstrations,
        "reward_min_new_rankings": policy.reward_min_new_rankings,
        "prompts_per_sampling_job": policy.prompts_per_sampling_job, "queue_low_water": policy.queue_low_water,
        "evaluation_prompts": policy.evaluation_prompts, "config_templates": "{}",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def test_a_loop_policy_is_edited_with_its_templates_checked_by_the_engine(client, superuser):
    objects = _project_with_everything("alpha")
    policy = objects["looppolicy"]
    url = f"{ADMIN}/looppolicy/{policy.pk}/change/"
    response = client.post(url, _policy_form(policy, config_templates='{"sft": {"learning_rat": 0.1}}'))
    assert response.status_code == 200 and "learning_rat" in response.content.decode()
    policy.refresh_from_db()
    assert policy.config_templates == {}
    response = client.post(url, _policy_form(policy, enabled="on", sft_min_new_demonstrations=7,
                                             config_templates='{"sft": {"learning_rate": 0.0001}}'))
    assert response.status_code == 302, response.content.decode()[:2000]
    policy.refresh_from_db()
    assert policy.enabled and policy.sft_min_new_demonstrations == 7
    assert policy.config_templates == {"sft": {"learning_rate": 0.0001}}
    assert policy.current_policy == objects["modelversion"]  # changed only by promotion


def test_a_staff_manager_sees_and_chooses_only_the_projects_they_manage(client, make_member):
    mine, theirs = _project_with_everything("mine"), _project_with_everything("theirs")
    manager = make_member(mine["project"], Role.MANAGER)
    manager.is_staff = True
    manager.save()
    manager.user_permissions.add(*Permission.objects.filter(content_type__app_label="training"))
    client.force_login(manager)
    for model in MODELS[:-1]:
        html = client.get(f"{ADMIN}/{model}/").content.decode()
        shown = _row_ids(html, model)
        assert str(mine[model].pk) in shown and str(theirs[model].pk) not in shown, model
        assert client.get(f"{ADMIN}/{model}/{theirs[model].pk}/change/").status_code == 302, model  # not found
        assert "theirs" not in html, model  # not even in a filter
    # a loop policy's base model: only this project's models, and a forged choice is refused
    policy = mine["looppolicy"]
    html = client.get(f"{ADMIN}/looppolicy/{policy.pk}/change/").content.decode()
    assert "mine-base" in html and "theirs-base" not in html and "theirs-sft" not in html
    forged = _policy_form(policy, base_model=theirs["looppolicy"].base_model_id)
    response = client.post(f"{ADMIN}/looppolicy/{policy.pk}/change/", forged)
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    policy.refresh_from_db()
    assert policy.base_model.name == "mine-base"
    # workers serve every project: theirs shows, but not which run of the other project it holds
    GpuWorkerFactory(hostname="node-mine", current_run=mine["trainingrun"])
    GpuWorkerFactory(hostname="node-theirs", current_run=theirs["trainingrun"])
    html = client.get(f"{ADMIN}/gpuworker/").content.decode()
    assert f"/training/runs/{mine['trainingrun'].pk}/" in html
    assert f"/training/runs/{theirs['trainingrun'].pk}/" not in html and "a run of another project" in html


def test_a_snapshot_of_another_project_is_not_listed_by_id_search(client, make_member):
    mine = ProjectFactory()
    theirs = DatasetSnapshotFactory(project=ProjectFactory())
    manager = make_member(mine, Role.MANAGER)
    manager.is_staff = True
    manager.save()
    manager.user_permissions.add(*Permission.objects.filter(content_type__app_label="training"))
    client.force_login(manager)
    html = client.get(f"{ADMIN}/datasetsnapshot/", {"q": str(theirs.pk)}).content.decode()
    assert _row_ids(html, "datasetsnapshot") == set()
