"""Evaluations on the Models and Training pages in headless Chromium: results with their intervals, the start form,
and a phone's width."""

import os
from pathlib import Path

import pytest

from annotation.models import Role
from tests.annotation.factories import PromptFactory
from tests.training.evaluations import evaluation_answered, judge_all
from tests.training.factories import ModelVersionFactory, trained_model
from training.models import Evaluation, LoopPolicy, ModelKind, RunKind, RunState

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("RLHF_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _three_policies(project):
    """base → sft-v1 → ppo-v2 → ppo-v3, each new one judged against the one before (as the loop does)."""
    project.rankings_per_task = 2
    project.save()
    base = ModelVersionFactory(project=project, name="smollm2-135m")
    v1 = trained_model(project, kind=ModelKind.SFT, run_kind=RunKind.SFT, name="sft-v1", parent=base)
    v2 = trained_model(project, kind=ModelKind.POLICY, run_kind=RunKind.PPO, name="ppo-v2", parent=v1)
    v3 = trained_model(project, kind=ModelKind.POLICY, run_kind=RunKind.PPO, name="ppo-v3", parent=v2)
    judge_all(evaluation_answered(project, [v2, v1], prompts=6), [v2] * 8 + [v1] * 2 + [None] * 2)
    judged = evaluation_answered(project, [v3, v2], prompts=6)
    judge_all(judged, [v3] * 6 + [v2] * 4 + [None] * 2)
    sampling = evaluation_answered(project, [v3, base], prompts=2)
    Evaluation.objects.filter(pk=sampling.pk).update(ingested_at=None)
    for entry in sampling.entries.all():
        entry.run.state = RunState.RUNNING
        entry.run.save(update_fields=["state"])
    LoopPolicy.objects.create(project=project, base_model=base, current_policy=v2, min_win_rate_to_promote=0.5,
                              auto_promote=True, evaluation_prompts=6)
    return base, v1, v2, v3


def test_the_models_page_shows_each_evaluation_with_its_interval_and_starts_a_new_one(
    live_server, page, login, project, make_member, data_root, tmp_path
):
    manager = make_member(project, Role.MANAGER)
    base, v1, v2, v3 = _three_policies(project)
    PromptFactory.create_batch(3, project=project)
    login(page, manager.username)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/projects/{project.pk}/training/models/")
    ratings = page.locator("#ratings tbody tr")
    assert [row.locator("td").first.inner_text().split(" ")[0] for row in ratings.all()] == ["ppo-v3", "ppo-v2", "sft-v1"]
    row = page.locator(f'tr[data-pair="{v2.pk}-{v1.pk}"]')
    assert row.locator("[data-win-rate]").inner_text() == "75.0\u00a0%"  # (8 + 1) / 12
    band = row.locator(".tr-ci-band").bounding_box()
    point = row.locator(".tr-ci-point").bounding_box()
    assert band["x"] < point["x"] + point["width"] / 2 < band["x"] + band["width"]
    assert page.locator(f"#model-{v3.pk} [data-rating]").count() == 1
    page.locator("#evaluations").screenshot(path=str(_screenshot_dir(tmp_path) / "models-evaluations-1280.png"))
    page.screenshot(path=str(_screenshot_dir(tmp_path) / "models-1280.png"), full_page=True)

    # start one: base against ppo-v3 on 2 held-out prompts
    page.check(f'#evaluation-form input[name=models][value="{v3.pk}"]')
    page.check(f'#evaluation-form input[name=models][value="{v1.pk}"]')
    page.fill("#evaluation-form input[name=num_prompts]", "2")
    with page.expect_navigation():
        page.click("#evaluation-form button[type=submit]")
    newest = Evaluation.objects.order_by("-pk").first()
    assert [entry.model for entry in newest.entries.order_by("position")] == [v1, v3]
    assert page.locator(f"#evaluation-{newest.pk}").get_attribute("data-state") == "sampling"

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.locator("#evaluations").screenshot(path=str(_screenshot_dir(tmp_path) / "models-evaluations-390.png"))
    assert page.js_errors == []


def test_the_training_page_has_an_evaluations_card_and_the_loop_says_why_a_policy_waits(
    live_server, page, login, project, make_member, data_root, tmp_path
):
    manager = make_member(project, Role.MANAGER)
    _three_policies(project)
    login(page, manager.username)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/projects/{project.pk}/training/")
    card = page.locator("#evaluations-card")
    assert card.locator(".tr-eval-mini").count() == 3
    waiting = page.locator('li[data-step="promote"] [data-waiting]').inner_text()
    assert waiting.startswith("ppo-v3 is not promoted: its win rate over ppo-v2 is 58.3 %"), waiting
    page.screenshot(path=str(_screenshot_dir(tmp_path) / "training-1280.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(_screenshot_dir(tmp_path) / "training-390.png"), full_page=True)
    assert page.js_errors == []
