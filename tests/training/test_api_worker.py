"""The training API against a real GPU-queue worker: what an engineer's client sees while a run goes."""

import pytest

from annotation.models import Role
from tests.training.conftest import accepted_demonstrations, run_finished, wait_for
from training.models import TrainingRun

pytestmark = [pytest.mark.celery]

SFT_QUICK = {"max_steps": 3, "per_device_batch_size": 2, "log_every": 1, "save_every": 2, "max_length": 64}


def test_a_client_builds_a_tiny_model_fine_tunes_it_and_follows_the_run(project, make_member, api_client_for, gpu_worker):
    api = api_client_for(make_member(project, Role.MANAGER))
    queued = api.post("/api/models/", {"project": project.pk, "name": "tiny-base", "tiny": {}}, format="json")
    assert queued.status_code == 202, queued.json()
    run_finished(TrainingRun.objects.get(pk=queued.json()["id"]))
    built = api.get(f"/api/runs/{queued.json()['id']}/").json()
    assert built["state"] == "succeeded", built["error"]
    assert built["output_model"]["name"] == "tiny-base" and built["result"] is not None
    base = api.get(f"/api/models/{built['output_model']['id']}/").json()
    assert base["kind"] == "base" and base["run"]["id"] == built["id"]

    accepted_demonstrations(project, 4)
    triggered = api.post("/api/runs/", {"project": project.pk, "kind": "sft", "input_model": base["id"],
                                        "config": SFT_QUICK, "name": "sft-v1"}, format="json")
    assert triggered.status_code == 202, triggered.json()
    run_id = triggered.json()["id"]
    # follow it the way the run page does: poll the metrics with ?after=last_step
    seen, last_step = [], None

    def finished_with_every_point():
        nonlocal last_step
        page = api.get(f"/api/runs/{run_id}/metrics/" + (f"?after={last_step}" if last_step is not None else "")).json()
        seen.extend(point["step"] for point in page["points"])
        last_step = page["last_step"]
        return api.get(f"/api/runs/{run_id}/").json()["state"] in ("succeeded", "failed", "cancelled") and seen == [1, 2, 3]

    wait_for(finished_with_every_point, timeout=240, interval=1.0, what="the SFT run and its metrics")
    run = api.get(f"/api/runs/{run_id}/").json()
    assert run["state"] == "succeeded", run["error"]
    assert run["snapshot"]["row_count"] == 4 and run["latest_metrics"]["step"] == 3
    assert run["output_model"]["name"] == "sft-v1" and run["progress"]["step"] == 3
    log = api.get(f"/api/runs/{run_id}/log/").json()
    assert log["size"] > 0 and log["text"]
    snapshot = api.get(f"/api/snapshots/{run['snapshot']['id']}/download/")
    assert len(b"".join(snapshot.streaming_content).splitlines()) == 4
