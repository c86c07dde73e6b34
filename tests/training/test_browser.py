"""The training pages in headless Chromium: live charts, cancel and resume, the loop card, promote, phone width."""

import pytest

from annotation.models import Role
from tests.training.conftest import accepted_demonstrations
from tests.training.factories import ModelVersionFactory, TrainingRunFactory, metric_points_add, trained_model
from training.models import LoopPolicy, ModelKind, RunKind, RunState, TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _points(page, figure: str) -> int:
    """How many points the figure's chart holds, as Chart.js itself has them."""
    return page.evaluate(
        "(name) => { const canvas = document.querySelector(`.tr-chart[data-figure='${name}'] canvas`);"
        " return canvas ? window.Chart.getChart(canvas).data.datasets[0].data.length : 0; }",
        figure,
    )


def test_the_run_pages_charts_grow_as_the_engine_logs_and_stop_when_it_finishes(
    live_server, page, login, project, make_member
):
    manager = make_member(project, Role.MANAGER)
    run = TrainingRunFactory(project=project, kind=RunKind.SFT, state=RunState.RUNNING, step=3, total_steps=12,
                             finished_at=None)
    metric_points_add(run, [{"step": s, "loss": 2.0 / s, "learning_rate": 1e-4} for s in (1, 2, 3)])
    login(page, manager.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/training/runs/{run.pk}/")
    page.wait_for_selector(".tr-chart[data-figure='loss'][data-points='3']")
    assert _points(page, "loss") == 3 and _points(page, "learning_rate") == 3
    page.evaluate("window.notReloaded = true")

    # the engine logs more steps, and a figure it had not logged before
    metric_points_add(run, [{"step": s, "loss": 2.0 / s, "learning_rate": 1e-4} for s in range(4, 9)])
    metric_points_add(run, [{"step": 9, "loss": 0.2, "eval_loss": 0.3}])
    TrainingRun.objects.filter(pk=run.pk).update(step=9, eta_seconds=42)
    page.wait_for_selector(".tr-chart[data-figure='loss'][data-points='9']")
    page.wait_for_selector(".tr-chart[data-figure='eval_loss'][data-points='1']")
    assert _points(page, "loss") == 9 and _points(page, "learning_rate") == 8
    assert page.locator("[data-field=steps]").inner_text() == "step 9 of 12"
    assert page.locator("[data-field=eta]").inner_text() == "42 s"
    assert page.locator(".tr-chart[data-figure='loss'] .tr-chart-last").inner_text() == "0.2"

    # it succeeds: the header says so, the buttons go, and polling stops
    TrainingRun.objects.filter(pk=run.pk).update(state=RunState.SUCCEEDED, step=12)
    metric_points_add(run, [{"step": 12, "loss": 0.1}])
    page.wait_for_selector("#run-state .badge[data-state='succeeded']")
    page.wait_for_selector(".tr-chart[data-figure='loss'][data-points='10']")
    assert page.locator("#run-cancel").is_hidden() and page.locator("#run-resume").is_hidden()
    assert page.locator("#charts-note").inner_text() == ""
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.wait_for_timeout(4500)
    assert not [url for url in requests if "/api/runs/" in url]
    assert page.evaluate("window.notReloaded") is True
    assert page.js_errors == []


def test_cancel_stops_a_running_run_and_resume_queues_a_cancelled_one(live_server, page, login, project, make_member):
    manager = make_member(project, Role.MANAGER)
    running = TrainingRunFactory(project=project, kind=RunKind.SFT, state=RunState.RUNNING, finished_at=None,
                                 step=5, total_steps=50)
    login(page, manager.username)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{live_server.url}/projects/{project.pk}/training/runs/{running.pk}/")
    assert page.locator("#run-resume").is_hidden()
    page.click("#run-cancel")
    page.wait_for_selector("#run-state .badge:has-text('Running · cancelling')")
    assert page.locator("#run-cancel").is_hidden()
    running.refresh_from_db()
    assert running.cancel_requested and running.state == RunState.RUNNING  # its engine checkpoints, then stops

    queued = TrainingRunFactory(project=project, kind=RunKind.SFT, state=RunState.QUEUED, attempt=0, started_at=None,
                                finished_at=None, step=0)
    page.goto(f"{live_server.url}/projects/{project.pk}/training/runs/{queued.pk}/")
    page.click("#run-cancel")
    page.wait_for_selector("#run-state .badge[data-state='cancelled']")
    assert TrainingRun.objects.get(pk=queued.pk).state == RunState.CANCELLED
    page.click("#run-resume")  # the resume button appeared without a reload
    page.wait_for_selector("#run-state .badge[data-state='queued']")
    assert TrainingRun.objects.get(pk=queued.pk).state == RunState.QUEUED
    assert page.locator("#run-cancel").is_visible()
    assert page.js_errors == []


def test_the_loop_card_shows_progress_and_runs_a_step_now(live_server, page, login, project, make_member):
    manager = make_member(project, Role.MANAGER)
    base = ModelVersionFactory(project=project, kind=ModelKind.BASE, name="tiny-base")
    LoopPolicy.objects.create(project=project, base_model=base, sft_min_new_demonstrations=8)
    accepted_demonstrations(project, 3)
    login(page, manager.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.click("#action-training")
    sft = page.locator("li.tr-step[data-step='sft']")
    assert sft.locator("[data-waiting]").inner_text() == "3 of 8 new accepted demonstrations"
    # the bar grows to its width over a 0.4 s transition once app.js has applied data-width: wait for it
    page.wait_for_function(
        "() => { const bar = document.querySelector(\"li.tr-step[data-step='sft'] .tr-progress-bar\");"
        " return Math.abs(bar.getBoundingClientRect().width / bar.parentElement.getBoundingClientRect().width"
        " - 0.375) < 0.01; }"
    )
    assert page.locator("#loop-enabled").inner_text() == "off"

    sft.get_by_role("button", name="Run this step now").click()
    page.wait_for_selector("li.tr-step[data-step='sft'] .badge[data-state='queued']")
    run = TrainingRun.objects.get(project=project, kind=RunKind.SFT)
    assert run.trigger == "loop" and run.input_model == base and run.created_by == manager
    assert page.locator(f"li.tr-step[data-step='sft'] a[href$='/training/runs/{run.pk}/']").is_visible()
    assert page.locator("li.tr-step[data-step='sft'] button").count() == 0

    page.click("#loop-toggle")  # turn the loop on
    page.wait_for_selector("#loop-enabled:has-text('on')")
    assert LoopPolicy.objects.get(project=project).enabled
    assert page.js_errors == []


def test_promote_makes_a_model_current_and_a_refusal_is_shown_as_text(live_server, page, login, project, make_member):
    manager = make_member(project, Role.MANAGER)
    base = ModelVersionFactory(project=project, kind=ModelKind.BASE, name="tiny-base")
    sft = trained_model(project, kind=ModelKind.SFT, run_kind=RunKind.SFT, name="sft-<b>v1</b>", parent=base)
    login(page, manager.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/training/models/")
    node = page.locator(f"#model-{sft.pk}")
    assert node.locator(".tr-model-name").first.inner_text() == "sft-<b>v1</b>"
    node.get_by_role("button", name="Make it the current policy").click()
    page.wait_for_selector(f"#model-{sft.pk} [data-current='policy']")
    assert LoopPolicy.objects.get(project=project).current_policy == sft
    assert page.locator(f"#model-{sft.pk} > .tr-node-card button").count() == 0

    # a refusal of the API is shown, as text
    button = page.locator(f"#model-{base.pk} > .tr-node-card button")
    page.route("**/api/models/*/promote/", lambda route: route.fulfill(
        status=400, content_type="application/json", body='{"detail": "<i>nope</i>: refused"}'))
    button.click()
    page.wait_for_selector("#tr-status.error")
    assert page.locator("#tr-status").inner_text() == "<i>nope</i>: refused"
    assert button.is_enabled()
    assert page.js_errors == []


def test_the_training_pages_fit_a_phone_without_sideways_scrolling(live_server, page, login, project, make_member):
    manager = make_member(project, Role.MANAGER)
    base = ModelVersionFactory(project=project, kind=ModelKind.BASE, name="a-rather-long-base-model-name-" * 3)
    sft = trained_model(project, kind=ModelKind.SFT, run_kind=RunKind.SFT, parent=base)
    LoopPolicy.objects.create(project=project, base_model=base, current_policy=sft)
    run = TrainingRunFactory(project=project, kind=RunKind.SFT, state=RunState.FAILED, input_model=base,
                             error="Traceback: " + "x" * 400, config={"very_long_key_" * 6: "value " * 40})
    metric_points_add(run, [{"step": s, "loss": 1.0 / s, "grad_norm": 0.5} for s in range(1, 6)])
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, manager.username)
    for path in ("training/", f"training/runs/{run.pk}/", "training/models/"):
        page.goto(f"{live_server.url}/projects/{project.pk}/{path}")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, (path, overflow)
    assert page.js_errors == []


def test_a_probe_reward_run_reads_well_wide_and_on_a_phone(live_server, page, login, project, make_member, tmp_path):
    """Screenshots go to $RLHF_SCREENSHOT_DIR when it is set (to look at them), else to the test's tmp folder."""
    import os
    from pathlib import Path

    folder = Path(os.environ.get("RLHF_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    manager = make_member(project, Role.MANAGER)
    figures = {"probe_l2": 3.0, "cv_accuracy": 0.6913, "train_accuracy": 0.803, "eval_accuracy": 0.6784,
               "eval_pairs": 199, "train_pairs": 797, "probe_features": 5760, "truncated_pairs": 0}
    probe = trained_model(project, kind=ModelKind.REWARD, run_kind=RunKind.REWARD, metrics=figures,
                          name="hh-probe", config={"method": "probe", "margin_scale": 0.0})
    metric_points_add(probe.run, [{"step": 0, **figures}])
    login(page, manager.username)
    for width, height in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.goto(f"{live_server.url}/projects/{project.pk}/training/")
        row = page.locator(f"tr[data-run='{probe.run_id}']")
        assert "eval accuracy 0.6784" in " ".join(row.inner_text().split())
        page.screenshot(path=str(folder / f"training-probe-run-{width}.png"), full_page=True)
        page.goto(f"{live_server.url}/projects/{project.pk}/training/runs/{probe.run_id}/")
        body = " ".join(page.locator("main").inner_text().split())
        assert "method" in body and "probe" in body
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, (width, overflow)
        page.screenshot(path=str(folder / f"probe-run-detail-{width}.png"), full_page=True)
    assert page.js_errors == []
