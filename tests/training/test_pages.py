"""Server-rendered training pages: who sees them, the loop card, runs, one run, the model lineage, escaping."""

import json
import re

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation.models import Role
from tests.factories import MembershipFactory, ProjectFactory
from tests.training.conftest import accepted_demonstrations
from tests.training.factories import (
    GpuWorkerFactory,
    ModelVersionFactory,
    SamplingJobFactory,
    TrainingRunFactory,
    metric_points_add,
    trained_model,
)
from training.models import LoopPolicy, ModelKind, RunKind, RunState, SnapshotKind

pytestmark = pytest.mark.django_db


def _ml_engineer(project, make_member):
    user = make_member(project, Role.LABELER)
    user.user_permissions.add(Permission.objects.get(codename="use_training_api"))
    return user


def _pages(project, run) -> list[str]:
    return [
        f"/projects/{project.pk}/training/",
        f"/projects/{project.pk}/training/runs/{run.pk}/",
        f"/projects/{project.pk}/training/models/",
    ]


def _json_script(html: str, element_id: str):
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(match.group(1))


def test_managers_and_ml_engineers_of_the_project_see_the_pages_everyone_else_gets_404(
    client, project, make_member
):
    run = TrainingRunFactory(project=project)
    allowed = [make_member(project, Role.MANAGER), _ml_engineer(project, make_member)]
    refused = [
        make_member(project, Role.LABELER),
        make_member(project, Role.REVIEWER),
        make_member(ProjectFactory(), Role.MANAGER),  # a manager of another project
        _ml_engineer(ProjectFactory(), make_member),  # an ML engineer outside the project
    ]
    for user in allowed:
        client.force_login(user)
        for url in _pages(project, run):
            assert client.get(url).status_code == 200, (user, url)
    for user in refused:
        client.force_login(user)
        for url in _pages(project, run):
            assert client.get(url).status_code == 404, (user, url)
    client.logout()
    response = client.get(_pages(project, run)[0])
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_run_of_another_project_is_404_under_this_projects_address(client, project, make_member):
    other = ProjectFactory()
    manager = make_member(project, Role.MANAGER)
    # the manager manages both projects: still, a run is shown only under its own project
    MembershipFactory(project=other, user=manager, role=Role.MANAGER)
    run = TrainingRunFactory(project=other)
    client.force_login(manager)
    assert client.get(f"/projects/{project.pk}/training/runs/{run.pk}/").status_code == 404
    assert client.get(f"/projects/{other.pk}/training/runs/{run.pk}/").status_code == 200


def test_the_project_page_and_the_menu_link_to_training_for_managers_only(client, project, make_member):
    manager, labeler = make_member(project, Role.MANAGER), make_member(project, Role.LABELER)
    client.force_login(manager)
    html = client.get(f"/projects/{project.pk}/").content.decode()
    assert f'href="/projects/{project.pk}/training/" id="action-training"' in html
    assert 'class="nav-training"' in html
    client.force_login(labeler)
    html = client.get(f"/projects/{project.pk}/").content.decode()
    assert "/training/" not in html


def test_the_loop_card_says_what_each_step_waits_for_with_progress_and_a_start_button(
    client, project, make_member
):
    base = ModelVersionFactory(project=project, kind=ModelKind.BASE, name="tiny-base")
    LoopPolicy.objects.create(
        project=project, enabled=True, base_model=base, sft_min_new_demonstrations=8, reward_min_new_rankings=50
    )
    accepted_demonstrations(project, 3)
    client.force_login(make_member(project, Role.MANAGER))
    html = client.get(f"/projects/{project.pk}/training/").content.decode()
    sft = html.split('data-step="sft"')[1].split("</li>")[0]
    assert "<strong>SFT</strong>: <span data-waiting>3 of 8 new accepted demonstrations</span>" in sft
    assert 'aria-valuenow="3"' in sft and 'aria-valuemax="8"' in sft and 'data-width="37.5%"' in sft
    assert f'data-post-url="/api/projects/{project.pk}/loop/steps/sft/start/"' in sft
    assert "Run this step now" in sft
    preferences = html.split('data-step="preferences"')[1].split("</li>")[0]
    assert "0 of 50 new rankings" in preferences
    promote = html.split('data-step="promote"')[1].split("</li>")[0]
    assert "Run this step now" not in promote  # nothing to promote yet
    assert 'id="loop-enabled">on<' in html
    assert "Next: SFT — 3 of 8 new accepted demonstrations." in html


def test_a_step_with_a_run_in_progress_shows_the_run_and_offers_no_start(client, project, make_member):
    base = ModelVersionFactory(project=project, kind=ModelKind.BASE)
    LoopPolicy.objects.create(project=project, enabled=True, base_model=base)
    run = TrainingRunFactory(project=project, kind=RunKind.SFT, state=RunState.RUNNING, step=30, total_steps=120,
                             eta_seconds=300, input_model=base)
    client.force_login(make_member(project, Role.MANAGER))
    html = client.get(f"/projects/{project.pk}/training/").content.decode()
    sft = html.split('data-step="sft"')[1].split("</li>")[0]
    assert f'href="/projects/{project.pk}/training/runs/{run.pk}/">#{run.pk}</a>' in sft
    assert "step 30 of 120" in sft and "ETA 5 min 00 s" in sft
    assert "Run this step now" not in sft
    assert f"SFT: run {run.pk} is running" in html


def test_the_runs_table_shows_state_progress_eta_and_each_kinds_headline_newest_first(client, project, make_member):
    sft = trained_model(project, kind=ModelKind.SFT, run_kind=RunKind.SFT, name="sft-v1", metrics={"loss": 0.4321})
    reward = trained_model(project, kind=ModelKind.REWARD, run_kind=RunKind.REWARD, parent=sft,
                           snapshot_kind=SnapshotKind.PREFERENCES, metrics={"eval_accuracy": 0.875, "loss": 0.3})
    ppo = TrainingRunFactory(project=project, kind=RunKind.PPO, state=RunState.RUNNING, step=10, total_steps=40,
                             eta_seconds=90, input_model=sft, reward_model=reward)
    metric_points_add(ppo, [{"step": 5, "score": 0.1, "kl": 0.01}, {"step": 10, "score": 0.25, "kl": 0.02}])
    dpo = TrainingRunFactory(project=project, kind=RunKind.DPO, state=RunState.FAILED, error="CUDA out of memory",
                             result={"metrics": {"rewards/accuracies": 0.61}})
    client.force_login(make_member(project, Role.MANAGER))
    html = client.get(f"/projects/{project.pk}/training/").content.decode()
    rows = re.findall(r'<tr data-run="(\d+)">(.*?)</tr>', html, re.S)
    assert [int(pk) for pk, _ in rows] == [dpo.pk, ppo.pk, reward.run_id, sft.run_id]
    cells = dict((int(pk), row) for pk, row in rows)
    assert "rewards accuracy</span> 0.61" in cells[dpo.pk] and "CUDA out of memory" in cells[dpo.pk]
    assert "tr-state-failed" in cells[dpo.pk]
    assert "score</span> 0.25" in cells[ppo.pk]  # the newest logged point while it runs
    assert "10 / 40 · ETA 1 min 30 s" in cells[ppo.pk] and 'data-width="25.0%"' in cells[ppo.pk]
    assert "eval accuracy</span> 0.875" in cells[reward.run_id]
    assert "loss</span> 0.4321" in cells[sft.run_id] and "sft-v1" in cells[sft.run_id]


def test_the_training_page_makes_as_many_queries_for_40_runs_as_for_2(
    client, project, make_member, django_assert_max_num_queries
):
    base = ModelVersionFactory(project=project, kind=ModelKind.BASE)
    LoopPolicy.objects.create(project=project, base_model=base)
    GpuWorkerFactory.create_batch(2)

    def add_runs(count):
        for index in range(count):
            model = trained_model(project, kind=ModelKind.SFT, run_kind=RunKind.SFT, parent=base)
            running = TrainingRunFactory(project=project, kind=RunKind.PPO, state=RunState.RUNNING,
                                         input_model=model, step=index, total_steps=50)
            metric_points_add(running, [{"step": 1, "score": 0.5}])
            SamplingJobFactory(project=project, model=model)

    add_runs(1)
    client.force_login(make_member(project, Role.MANAGER))
    url = f"/projects/{project.pk}/training/"
    client.get(url)  # warm: the session, the content types
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    add_runs(13)  # 40 runs, 14 sampling jobs
    with django_assert_max_num_queries(len(few)):
        html = client.get(url).content.decode()
    assert html.count("<tr data-run=") == 20  # a page of them
    assert "Page 1 of 3" in html
    assert client.get(url, {"page": 3}).content.decode().count("<tr data-run=") == 2


def test_the_run_page_shows_inputs_config_points_and_the_live_urls(client, project, make_member, data_root):
    sft = trained_model(project, kind=ModelKind.SFT, run_kind=RunKind.SFT, name="sft-v1")
    run = TrainingRunFactory(
        project=project, kind=RunKind.REWARD, state=RunState.RUNNING, input_model=sft, snapshot=sft.snapshot,
        attempt=2, max_attempts=3, step=20, total_steps=80, eta_seconds=125,
        config={"model_path": "/data/models/sft-v1", "learning_rate": 1e-05, "num_epochs": 1},
    )
    metric_points_add(run, [{"step": 10, "loss": 0.7, "learning_rate": 1e-5}, {"step": 20, "loss": 0.6}])
    (data_root / run.run_dir).mkdir(parents=True)
    (data_root / run.run_dir / "engine.log").write_text("loading model\nstep 20 loss 0.6\n")
    client.force_login(make_member(project, Role.MANAGER))
    html = client.get(f"/projects/{project.pk}/training/runs/{run.pk}/").content.decode()
    assert "Reward model run #" in html and 'data-state="running"' in html
    assert '<span data-field="attempt">2</span> of <span data-field="max_attempts">3</span>' in html
    assert "step 20 of 80" in html and "2 min 05 s" in html
    assert sft.snapshot.sha256 in html and "120 rows" in html and "sft-v1" in html
    assert "&quot;learning_rate&quot;: 1e-05" in html  # the config, pretty and escaped
    assert "step 20 loss 0.6" in html
    config = _json_script(html, "run-config-data")
    assert config["points"] == [{"step": 10, "loss": 0.7, "learning_rate": 1e-5}, {"step": 20, "loss": 0.6}]
    assert config["lastStep"] == 20 and config["state"] == "running"
    assert config["urls"]["metrics"] == f"/api/runs/{run.pk}/metrics/"
    assert config["urls"]["cancel"] == f"/api/runs/{run.pk}/cancel/"
    assert 'id="run-cancel"' in html and 'id="run-cancel" hidden' not in html
    assert "chart.umd.min.js" in html


def test_a_finished_run_page_offers_resume_and_links_its_output_model(client, project, make_member):
    model = trained_model(project, kind=ModelKind.SFT, run_kind=RunKind.SFT, name="sft-out")
    failed = TrainingRunFactory(project=project, kind=RunKind.SFT, state=RunState.FAILED, error="boom")
    client.force_login(make_member(project, Role.MANAGER))
    html = client.get(f"/projects/{project.pk}/training/runs/{model.run_id}/").content.decode()
    assert f'#model-{model.pk}">sft-out</a>' in html
    assert 'id="run-resume" hidden' in html and 'id="run-cancel" hidden' in html
    html = client.get(f"/projects/{project.pk}/training/runs/{failed.pk}/").content.decode()
    assert 'id="run-resume">' in html and 'id="run-error" role="alert">boom</p>' in html


def test_user_text_is_escaped_on_every_training_page(client, project, make_member):
    evil_name = "<script>alert('name')</script>"
    evil_error = "<img src=x onerror=alert('error')>"
    base = ModelVersionFactory(project=project, kind=ModelKind.BASE, name=evil_name, description="<b>desc</b>")
    LoopPolicy.objects.create(project=project, base_model=base, current_policy=base,
                              last_tick_note="<svg onload=alert('note')>")
    run = TrainingRunFactory(
        project=project, kind=RunKind.SFT, state=RunState.FAILED, input_model=base, error=evil_error,
        worker="<i>worker</i>", config={"note": "</script><script>alert('config')</script>"},
    )
    metric_points_add(run, [{"step": 1, "loss": 1.0, "</script><b>": 2.0}])
    SamplingJobFactory(project=project, model=base)
    client.force_login(make_member(project, Role.MANAGER))
    for url in _pages(project, run):
        html = client.get(url).content.decode()
        assert "<script>alert" not in html and "<img src=x" not in html and "<svg" not in html, url
        assert "<b>desc</b>" not in html and "<i>worker</i>" not in html, url
    html = client.get(f"/projects/{project.pk}/training/runs/{run.pk}/").content.decode()
    assert "&lt;img src=x onerror=alert(&#x27;error&#x27;)&gt;" in html
    assert _json_script(html, "run-config-data")["points"][0]["</script><b>"] == 2.0
    html = client.get(f"/projects/{project.pk}/training/models/").content.decode()
    assert "&lt;script&gt;alert(&#x27;name&#x27;)&lt;/script&gt;" in html


def test_the_models_page_draws_the_lineage_with_badges_figures_jobs_and_promote_buttons(
    client, project, make_member
):
    base = ModelVersionFactory(project=project, kind=ModelKind.BASE, name="tiny-base")
    sft = trained_model(project, kind=ModelKind.SFT, run_kind=RunKind.SFT, name="sft-v1", parent=base,
                        metrics={"loss": 1.25, "train_loss": 1.5})
    job = SamplingJobFactory(project=project, model=sft, tasks_created=37)
    reward = trained_model(project, kind=ModelKind.REWARD, run_kind=RunKind.REWARD, name="rm-v1", parent=sft,
                           snapshot_kind=SnapshotKind.PREFERENCES, metrics={"eval_accuracy": 0.8125})
    policy = trained_model(project, kind=ModelKind.POLICY, run_kind=RunKind.PPO, name="ppo-v1", parent=sft,
                           metrics={"score": 0.42}, reward_model=reward, snapshot_kind=SnapshotKind.PROMPTS)
    LoopPolicy.objects.create(project=project, base_model=base, current_policy=sft, current_reward_model=reward)
    client.force_login(make_member(project, Role.MANAGER))
    html = client.get(f"/projects/{project.pk}/training/models/").content.decode()

    def node(model):
        return html.split(f'id="model-{model.pk}"')[1]

    # nesting: base holds sft, sft holds the job, the reward model and the policy
    assert html.index(f'id="model-{base.pk}"') < html.index(f'id="model-{sft.pk}"') < html.index(f'data-job="{job.pk}"')
    assert f'id="model-{reward.pk}"' in node(sft) and f'id="model-{policy.pk}"' in node(sft)
    assert "<strong data-tasks-created>37</strong> ranking tasks created" in node(sft)
    assert 'data-current="policy"' in node(sft).split("</div>")[0] + node(sft).split("</div>")[1]
    assert 'data-current="reward"' in node(reward).split("tr-node-facts")[0]
    assert sft.snapshot.sha256[:12] in node(sft) and "120 rows" in node(sft)
    assert "loss</span> 1.25" in node(sft) and "eval accuracy</span> 0.8125" in node(reward)
    assert f'scored by <a href="#model-{reward.pk}">rm-v1</a>' in node(policy)
    # promotable: the base and the PPO policy (not the current ones)
    buttons = re.findall(r'data-post-url="/api/models/(\d+)/promote/"', html)
    assert sorted(int(pk) for pk in buttons) == sorted([base.pk, policy.pk])


def test_the_models_page_queries_do_not_grow_with_the_models(client, project, make_member,
                                                             django_assert_max_num_queries):
    base = ModelVersionFactory(project=project, kind=ModelKind.BASE)

    def add(count):
        for _ in range(count):
            sft = trained_model(project, kind=ModelKind.SFT, run_kind=RunKind.SFT, parent=base)
            SamplingJobFactory(project=project, model=sft)

    add(1)
    client.force_login(make_member(project, Role.MANAGER))
    url = f"/projects/{project.pk}/training/models/"
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    add(10)
    with django_assert_max_num_queries(len(few)):
        assert client.get(url).content.decode().count('class="tr-node tr-job"') == 11


def test_the_gpu_workers_card_hides_another_projects_run(client, project, make_member):
    mine = TrainingRunFactory(project=project, state=RunState.RUNNING)
    theirs = TrainingRunFactory(project=ProjectFactory(), state=RunState.RUNNING)
    GpuWorkerFactory(hostname="node-a", current_run=mine)
    GpuWorkerFactory(hostname="node-b", current_run=theirs, gpu_count=2, gpu_names=["A100", "A100"])
    client.force_login(make_member(project, Role.MANAGER))
    html = client.get(f"/projects/{project.pk}/training/").content.decode()
    assert f"run #{mine.pk}</a>" in html
    assert f"run #{theirs.pk}" not in html and "busy with another project's run" in html
    assert "2 GPUs: A100, A100" in html



def test_a_probe_reward_run_is_summed_up_by_its_cross_validated_accuracy(client, project, make_member):
    # a probe fitted on every pair (no held-out share) reports cv_accuracy and train_accuracy, not eval_accuracy
    figures = {"probe_l2": 3.0, "cv_accuracy": 0.6913, "train_accuracy": 0.803, "train_loss": 0.49, "train_pairs": 797}
    probe = trained_model(project, kind=ModelKind.REWARD, run_kind=RunKind.REWARD,
                          snapshot_kind=SnapshotKind.PREFERENCES, metrics=figures)
    client.force_login(make_member(project, Role.MANAGER))

    html = client.get(f"/projects/{project.pk}/training/").content.decode()

    row = dict(re.findall(r'<tr data-run="(\d+)">(.*?)</tr>', html, re.S))[str(probe.run_id)]
    assert "cross-validated accuracy</span> 0.6913" in row
