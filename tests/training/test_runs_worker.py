"""Runs end to end on a real Celery worker: a tiny base model, SFT on accepted demonstrations, sampling."""

import json

import pytest

from ranking.models import RankingTask, TaskSource
from tests.annotation.factories import PromptFactory
from tests.training.conftest import accepted_demonstrations, run_finished
from training.models import MetricPoint, ModelKind, ModelVersion, RunState
from training.services.model_versions import model_make_tiny
from training.services.runs import run_trigger
from training.services.sampling import sampling_job_start
from training.services.storage import data_path

pytestmark = [pytest.mark.celery]

SFT_QUICK = {"max_steps": 3, "per_device_batch_size": 2, "log_every": 1, "save_every": 2, "max_length": 64}


def test_a_tiny_model_is_fine_tuned_then_sampled_into_ranking_tasks(project, gpu_worker):
    run = run_finished(model_make_tiny(project=project, name="tiny-base"))
    assert run.state == RunState.SUCCEEDED, run.error
    base = ModelVersion.objects.get(project=project, name="tiny-base")
    assert base.kind == ModelKind.BASE and base.run == run
    assert (data_path(base.storage_path) / "config.json").is_file()

    accepted_demonstrations(project, 6)
    sft = run_finished(run_trigger(project=project, kind="sft", input_model=base, config_overrides=SFT_QUICK))
    assert sft.state == RunState.SUCCEEDED, sft.error
    assert sft.attempt == 1
    assert (sft.step, sft.total_steps, sft.progress) == (3, 3, 1.0)
    assert sft.snapshot.row_count == 6 and len(sft.snapshot.sha256) == 64
    policy = sft.output_model
    assert policy.kind == ModelKind.SFT and policy.parent == base and policy.snapshot == sft.snapshot
    # every logged step reached the database, with its figures
    steps = list(MetricPoint.objects.filter(run=sft).values_list("step", flat=True))
    assert steps == [1, 2, 3]
    assert "loss" in MetricPoint.objects.get(run=sft, step=1).values
    config_sent = json.loads((data_path(sft.run_dir) / "config.json").read_text())
    assert config_sent == sft.config and config_sent["max_steps"] == 3

    prompts = PromptFactory.create_batch(3, project=project)
    job = sampling_job_start(
        project=project, model=policy, num_prompts=2, responses_per_prompt=2,
        config_overrides={"max_new_tokens": 8, "temperature": 1.0},
    )
    sample_run = run_finished(job.run)
    assert sample_run.state == RunState.SUCCEEDED, sample_run.error
    job.refresh_from_db()
    tasks = RankingTask.objects.filter(project=project, source=TaskSource.SAMPLING)
    assert job.tasks_created == tasks.count() and job.tasks_created + job.tasks_skipped == 2
    for task in tasks:
        assert task.prompt in prompts[:2]
        assert {response.generator for response in task.responses.all()} == {policy.name}
