"""The training REST API: who may use it, how triggers are refused, run life cycle rules, following a run,
snapshots, models, sampling jobs, the loop and the workers. No worker runs here: runs stay queued."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation.models import Role
from tests.concurrency import run_at_once
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.training.conftest import accepted_demonstrations
from training.models import (
    DatasetSnapshot,
    GpuWorker,
    LoopPolicy,
    MetricPoint,
    ModelKind,
    ModelVersion,
    RunState,
    SamplingJob,
    SnapshotState,
    TrainingRun,
)
from training.services.snapshots import snapshot_build

pytestmark = pytest.mark.django_db


# ---- helpers ----


@pytest.fixture
def ml_engineer(db):
    """ml_engineer(project=None): a user with annotation.use_training_api, a labeler member of ``project`` if given."""

    def make(project=None):
        user = UserFactory()
        user.user_permissions.add(Permission.objects.get(codename="use_training_api"))
        if project is not None:
            MembershipFactory(project=project, user=user, role=Role.LABELER)
        return user

    return make


@pytest.fixture
def engineer(project, ml_engineer):
    return ml_engineer(project)


@pytest.fixture
def api(api_client_for, engineer):
    """An API client of an ML engineer who belongs to ``project``."""
    return api_client_for(engineer)


def make_model(project, name: str = "base", kind: str = ModelKind.BASE, **fields) -> ModelVersion:
    return ModelVersion.objects.create(project=project, kind=kind, name=name, storage_path=f"models/{name}", **fields)


_runs = iter(range(1, 1_000_000))


def make_run(project, *, state: str = RunState.QUEUED, **fields) -> TrainingRun:
    fields.setdefault("input_model", make_model(project, name=f"run-input-{next(_runs)}"))
    run = TrainingRun.objects.create(
        project=project, kind=fields.pop("kind", "sft"), state=state, config={"model_path": "x"},
        dedup_key=fields.pop("dedup_key", f"test:{next(_runs)}"), **fields,
    )
    run.run_dir = f"runs/{project.pk}/{run.pk}"
    run.save(update_fields=["run_dir"])
    return run


def make_snapshot(project, *, kind: str = "sft", state: str = SnapshotState.READY, data_root=None,
                  content: bytes = b'{"messages": []}\n') -> DatasetSnapshot:
    snapshot = DatasetSnapshot.objects.create(
        project=project, kind=kind, state=state, labels_until=timezone.now(),
        sha256="ab" * 32 if state == SnapshotState.READY else "",
    )
    if data_root is not None and state == SnapshotState.READY:
        relative = f"snapshots/{project.pk}/{snapshot.pk}-{kind}.jsonl"
        (data_root / relative).parent.mkdir(parents=True, exist_ok=True)
        (data_root / relative).write_bytes(content)
        snapshot.file_path, snapshot.size_bytes, snapshot.row_count = relative, len(content), content.count(b"\n")
        snapshot.save(update_fields=["file_path", "size_bytes", "row_count"])
    return snapshot


def error_fields(errors: dict, prefix: str = "") -> set[str]:
    """The dotted names of the fields an error answer names ({"a": {"b": [...]}} names "a.b")."""
    names = set()
    for key, value in errors.items():
        name = f"{prefix}.{key}" if prefix else key
        names |= error_fields(value, name) if isinstance(value, dict) else {name}
    return names


def model_folder(data_root, name: str) -> str:
    folder = data_root / "imports" / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return str(folder)


# ---- permissions ----

_names = iter(range(1, 1_000_000))


def _call(client, operation: str, project, data_root):
    """Make the request for ``operation`` against fresh objects of ``project``; return the response."""
    p = project.pk

    def model():
        return make_model(project, name=f"m{next(_names)}")

    def run(**fields):
        return make_run(project, **fields)

    def job():
        sampled = model()
        return SamplingJob.objects.create(project=project, model=sampled, num_prompts=2, responses_per_prompt=2,
                                          run=run(kind="sample", input_model=sampled))

    def promotable_project() -> int:
        make_model(project, name=f"sft{next(_names)}", kind=ModelKind.SFT, run=run(state=RunState.SUCCEEDED))
        return p

    return {
        "models": lambda: client.get(f"/api/models/?project={p}"),
        "model-register": lambda: client.post("/api/models/", {
            "project": p, "name": f"folder-{next(_names)}", "path": model_folder(data_root, f"f{next(_names)}")},
            format="json"),
        "model-tiny": lambda: client.post("/api/models/", {"project": p, "name": f"tiny-{next(_names)}", "tiny": {}},
                                          format="json"),
        "model": lambda: client.get(f"/api/models/{model().pk}/"),
        "model-promote": lambda: client.post(f"/api/models/{model().pk}/promote/", {"reason": "test"}, format="json"),
        "snapshots": lambda: client.get(f"/api/snapshots/?project={p}"),
        "snapshot-create": lambda: client.post("/api/snapshots/", {"project": p, "kind": "sft"}, format="json"),
        "snapshot": lambda: client.get(f"/api/snapshots/{make_snapshot(project).pk}/"),
        "snapshot-download": lambda: client.get(f"/api/snapshots/{make_snapshot(project, data_root=data_root).pk}/download/"),
        "runs": lambda: client.get(f"/api/runs/?project={p}"),
        "run-trigger": lambda: client.post("/api/runs/", {"project": p, "kind": "sft", "input_model": model().pk},
                                           format="json"),
        "run": lambda: client.get(f"/api/runs/{run().pk}/"),
        "run-cancel": lambda: client.post(f"/api/runs/{run().pk}/cancel/"),
        "run-resume": lambda: client.post(f"/api/runs/{run(state=RunState.FAILED).pk}/resume/"),
        "run-metrics": lambda: client.get(f"/api/runs/{run().pk}/metrics/?after=0"),
        "run-log": lambda: client.get(f"/api/runs/{run().pk}/log/"),
        "sampling-jobs": lambda: client.get(f"/api/sampling-jobs/?project={p}"),
        "sampling-job-start": lambda: client.post("/api/sampling-jobs/", {
            "project": p, "model": model().pk, "num_prompts": 5}, format="json"),
        "sampling-job": lambda: client.get(f"/api/sampling-jobs/{job().pk}/"),
        "loop": lambda: client.get(f"/api/projects/{p}/loop/"),
        "loop-update": lambda: client.put(f"/api/projects/{p}/loop/", {"queue_low_water": 3}, format="json"),
        "loop-patch": lambda: client.patch(f"/api/projects/{p}/loop/", {"auto_promote": False}, format="json"),
        "loop-step-start": lambda: client.post(f"/api/projects/{promotable_project()}/loop/steps/promote/start/"),
    }[operation]()


ALLOWED = {
    "models": 200, "model-register": 201, "model-tiny": 202, "model": 200, "model-promote": 200,
    "snapshots": 200, "snapshot-create": 202, "snapshot": 200, "snapshot-download": 200,
    "runs": 200, "run-trigger": 202, "run": 200, "run-cancel": 202, "run-resume": 202, "run-metrics": 200,
    "run-log": 200, "sampling-jobs": 200, "sampling-job-start": 202, "sampling-job": 200,
    "loop": 200, "loop-update": 200, "loop-patch": 200, "loop-step-start": 202,
}
# Managers and ML engineers who belong to the project drive its training; anyone else is answered
# exactly as if the project and its objects did not exist.
EXPECTED = {
    "anonymous": dict.fromkeys(ALLOWED, 401),
    "outsider": dict.fromkeys(ALLOWED, 404),
    "labeler": dict.fromkeys(ALLOWED, 404),
    "reviewer": dict.fromkeys(ALLOWED, 404),
    "manager": ALLOWED,
    "ml_engineer": ALLOWED,
    "ml_engineer_outsider": dict.fromkeys(ALLOWED, 404),
}


@pytest.mark.parametrize("who", EXPECTED)
def test_permission_matrix_managers_and_member_engineers_only_others_get_404(
    who, project, make_member, ml_engineer, api_client_for, data_root
):
    user = {
        "anonymous": lambda: None,
        "outsider": lambda: UserFactory(),
        "labeler": lambda: make_member(project, Role.LABELER),
        "reviewer": lambda: make_member(project, Role.REVIEWER),
        "manager": lambda: make_member(project, Role.MANAGER),
        "ml_engineer": lambda: ml_engineer(project),
        "ml_engineer_outsider": lambda: ml_engineer(None),
    }[who]()
    client = api_client_for(user)
    wrong = {}
    for operation, expected in EXPECTED[who].items():
        response = _call(client, operation, project, data_root)
        if response.status_code != expected:
            wrong[operation] = (response.status_code, getattr(response, "data", None))
    assert not wrong


def test_lists_without_a_project_show_only_the_projects_i_may_drive(api, api_client_for, project, engineer, make_member):
    mine = make_run(project)
    labeled_only = ProjectFactory()
    MembershipFactory(project=labeled_only, user=engineer, role=Role.LABELER)  # engineers drive member projects
    also_mine = make_run(labeled_only)
    foreign = make_run(ProjectFactory())
    ids = {row["id"] for row in api.get("/api/runs/").json()["results"]}
    assert ids == {mine.pk, also_mine.pk}
    assert foreign.input_model_id not in {row["id"] for row in api.get("/api/models/").json()["results"]}

    manager = make_member(project, Role.MANAGER)
    MembershipFactory(project=labeled_only, user=manager, role=Role.LABELER)  # a manager labeling elsewhere
    other = api_client_for(manager)
    assert {row["id"] for row in other.get("/api/runs/").json()["results"]} == {mine.pk}


@pytest.mark.parametrize("url", ["/api/runs/", "/api/models/", "/api/snapshots/", "/api/sampling-jobs/"])
def test_a_list_page_costs_the_same_queries_however_long(api, project, engineer, url):
    def add_objects():
        for _ in range(3):
            model = make_model(project, name=f"l{next(_names)}", created_by=engineer)
            run = make_run(project, kind="sample", input_model=model, created_by=engineer,
                           snapshot=make_snapshot(project, kind="prompts"))
            SamplingJob.objects.create(project=project, model=model, num_prompts=1, responses_per_prompt=2, run=run,
                                       created_by=engineer)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api.get(url).status_code == 200
        return len(captured)

    add_objects()
    few = queries()
    add_objects()
    assert queries() == few


def test_list_filters_by_kind_and_state_and_refuses_unknown_values(api, project):
    queued = make_run(project)
    failed = make_run(project, state=RunState.FAILED, kind="reward",
                      input_model=make_model(project, name="sft-1", kind=ModelKind.SFT))
    assert [r["id"] for r in api.get(f"/api/runs/?project={project.pk}&state=failed").json()["results"]] == [failed.pk]
    assert [r["id"] for r in api.get("/api/runs/?kind=sft").json()["results"]] == [queued.pk]
    assert [m["name"] for m in api.get("/api/models/?kind=sft").json()["results"]] == ["sft-1"]
    response = api.get("/api/runs/?state=done")
    assert response.status_code == 400 and "state" in response.json()["errors"]
    page = api.get("/api/runs/?limit=1").json()
    assert page["count"] == 2 and len(page["results"]) == 1 and page["next"]


def test_workers_are_listed_for_ml_engineers_and_staff_only(api_client_for, project, make_member, engineer):
    now = timezone.now()
    visible = make_run(project, state=RunState.RUNNING)
    foreign = make_run(ProjectFactory(), state=RunState.RUNNING)
    GpuWorker.objects.create(hostname="a", gpu_count=1, gpu_names=["H200"], current_run=visible, started_at=now,
                             last_heartbeat=now)
    GpuWorker.objects.create(hostname="b", gpu_count=8, current_run=foreign, started_at=now,
                             last_heartbeat=now - timedelta(hours=1))
    rows = api_client_for(engineer).get("/api/workers/").json()["results"]
    assert [(w["hostname"], w["alive"], w["busy"]) for w in rows] == [("a", True, True), ("b", False, True)]
    assert rows[0]["current_run"] == {"id": visible.pk, "kind": "sft", "state": "running"}
    assert rows[1]["current_run"] is None  # another project's run is not named
    assert api_client_for(UserFactory(is_staff=True)).get("/api/workers/").status_code == 200
    assert api_client_for(make_member(project, Role.MANAGER)).get("/api/workers/").status_code == 403
    assert api_client_for(None).get("/api/workers/").status_code == 401


# ---- triggering runs ----


def test_trigger_queues_a_run_with_a_fresh_snapshot_and_the_engine_config(api, project, engineer):
    base = make_model(project)
    response = api.post("/api/runs/", {
        "project": project.pk, "kind": "sft", "input_model": base.pk, "config": {"num_epochs": 2}, "name": "sft-v1",
    }, format="json")
    assert response.status_code == 202, response.json()
    data = response.json()
    run = TrainingRun.objects.get(pk=data["id"])
    assert data["state"] == "queued" and data["trigger"] == "manual" and data["created_by"] == engineer.username
    assert data["input_model"] == {"id": base.pk, "name": "base", "kind": "base"}
    assert data["snapshot"]["state"] == "building" and data["snapshot"]["kind"] == "sft"
    assert data["config"]["num_epochs"] == 2 and data["config"]["model_path"].endswith("models/base")
    assert data["progress"] == {"step": 0, "total_steps": None, "fraction": None, "eta_seconds": None}
    assert data["output_name"] == "sft-v1" and data["output_model"] is None and data["latest_metrics"] is None
    assert run.created_by == engineer


@pytest.mark.parametrize(
    ("change", "field", "detail"),
    [
        ({"config": {"learning_rat": 1e-5}}, "config.learning_rat",
         "config: unknown key 'learning_rat' (did you mean 'learning_rate'?)"),
        ({"config": {"learning_rate": "fast"}}, "config.learning_rate", "config.learning_rate: must be a number"),
        ({"config": {"per_device_batch_size": 0}}, "config.per_device_batch_size", "must be positive"),
        ({"config": {"lora": {"rr": 8}}}, "config.lora.rr", "unknown key 'rr'"),
        ({"config": {"model_path": "/elsewhere"}}, "config.model_path", "set by the platform"),
        ({"config": [1, 2]}, "config", ""),
        ({"kind": "sample"}, "kind", ""),
        ({"input_model": None}, "input_model", ""),
        ({"input_model": 999_999}, "input_model", "No model 999999 in this project."),
        ({"input_model": "reward"}, "input_model", "a sft run starts from one of"),
        ({"reward_model": "reward"}, "reward_model", "Only a ppo run takes reward_model."),
        ({"kind": "ppo"}, "reward_model", "A ppo run needs reward_model"),
        ({"snapshot": "preferences"}, "snapshot", "A sft run reads a sft snapshot"),
        ({"snapshot": "failed"}, "snapshot", "failed to build"),
        ({"name": "base"}, "name", "exists already"),
        ({"snapshot_options": {"pairs": "all"}}, None, "options.pairs: unknown option"),
    ],
)
def test_trigger_refuses_a_bad_field_with_a_400_naming_it(api, project, change, field, detail):
    base = make_model(project)
    reward = make_model(project, name="rm", kind=ModelKind.REWARD)
    snapshots = {
        "preferences": make_snapshot(project, kind="preferences"),
        "failed": make_snapshot(project, state=SnapshotState.FAILED),
    }
    body = {"project": project.pk, "kind": "sft", "input_model": base.pk, **change}
    for key in ("input_model", "reward_model"):
        if body.get(key) == "reward":
            body[key] = reward.pk
    if isinstance(body.get("snapshot"), str):
        body["snapshot"] = snapshots[body["snapshot"]].pk
    response = api.post("/api/runs/", body, format="json")
    assert response.status_code == 400, response.json()
    data = response.json()
    assert detail in data["detail"]
    if field is not None:
        assert field in data["errors"], data
    assert not TrainingRun.objects.exists() and not DatasetSnapshot.objects.filter(state="building").exists()


def test_trigger_with_a_model_of_another_project_answers_as_if_it_did_not_exist(api, project):
    foreign = make_model(ProjectFactory(), name="theirs")
    response = api.post("/api/runs/", {"project": project.pk, "kind": "sft", "input_model": foreign.pk},
                           format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"input_model": [f"No model {foreign.pk} in this project."]}


def test_trigger_in_a_project_i_cannot_drive_is_404(api_client_for, project, make_member):
    base = make_model(project)
    response = api_client_for(make_member(project, Role.REVIEWER)).post(
        "/api/runs/", {"project": project.pk, "kind": "sft", "input_model": base.pk}, format="json")
    assert response.status_code == 404


def test_a_run_already_queued_is_not_triggered_twice(api, project):
    base = make_model(project)
    body = {"project": project.pk, "kind": "sft", "input_model": base.pk}
    first = api.post("/api/runs/", body, format="json").json()
    again = api.post("/api/runs/", body, format="json")
    assert again.status_code == 409
    assert again.json()["run"] == first["id"] and f"run {first['id']}" in again.json()["detail"]
    other = api.post("/api/runs/", {**body, "config": {"num_epochs": 3}}, format="json")
    assert other.status_code == 202  # different settings: a different run


# ---- cancel and resume ----


def test_cancel_a_queued_run_at_once_then_resume_it(api, project):
    run = make_run(project)
    response = api.post(f"/api/runs/{run.pk}/cancel/")
    assert response.status_code == 202 and response.json()["state"] == "cancelled"
    again = api.post(f"/api/runs/{run.pk}/cancel/")
    assert again.status_code == 409 and "already finished" in again.json()["detail"]
    resumed = api.post(f"/api/runs/{run.pk}/resume/")
    assert resumed.status_code == 202
    assert resumed.json()["state"] == "queued" and resumed.json()["cancel_requested"] is False
    assert api.post(f"/api/runs/{run.pk}/resume/").status_code == 409  # queued: nothing to resume


def test_cancel_a_running_run_asks_it_to_stop(api, project):
    run = make_run(project, state=RunState.RUNNING, started_at=timezone.now())
    data = api.post(f"/api/runs/{run.pk}/cancel/").json()
    assert data["state"] == "running" and data["cancel_requested"] is True


@pytest.mark.parametrize(("state", "code"), [("failed", 202), ("succeeded", 409), ("running", 409)])
def test_only_a_cancelled_or_failed_run_resumes(api, project, state, code):
    run = make_run(project, state=state)
    response = api.post(f"/api/runs/{run.pk}/resume/")
    assert response.status_code == code
    run.refresh_from_db()
    assert run.state == ("queued" if code == 202 else state)


def test_resume_is_refused_while_the_same_run_is_active_again(api, project):
    base = make_model(project)
    failed = make_run(project, state=RunState.FAILED, input_model=base, dedup_key="manual:same")
    make_run(project, input_model=base, dedup_key="manual:same")
    response = api.post(f"/api/runs/{failed.pk}/resume/")
    assert response.status_code == 409


def test_resume_waits_for_a_snapshot_still_building(api, project):
    run = make_run(project, state=RunState.CANCELLED, snapshot=make_snapshot(project, state=SnapshotState.BUILDING))
    response = api.post(f"/api/runs/{run.pk}/resume/")
    assert response.status_code == 400 and "not ready" in response.json()["detail"]


# ---- following a run ----


def test_metrics_after_a_step_return_only_newer_points(api, project):
    run = make_run(project, state=RunState.RUNNING, step=5, total_steps=20, eta_seconds=30)
    for step in range(1, 6):
        MetricPoint.objects.create(run=run, step=step, values={"loss": 2.0 - step / 10})
    url = f"/api/runs/{run.pk}/metrics/"
    everything = api.get(url).json()
    assert [p["step"] for p in everything["points"]] == [1, 2, 3, 4, 5] and everything["last_step"] == 5
    assert everything["points"][0] == {"step": 1, "loss": 1.9}
    newer = api.get(f"{url}?after=3").json()
    assert [p["step"] for p in newer["points"]] == [4, 5] and newer["last_step"] == 5
    assert api.get(f"{url}?after=5").json() == {"points": [], "last_step": 5}
    assert api.get(f"/api/runs/{make_run(project).pk}/metrics/").json() == {"points": [], "last_step": None}
    assert api.get(f"{url}?after=x").status_code == 400
    detail = api.get(f"/api/runs/{run.pk}/").json()
    assert detail["latest_metrics"] == {"step": 5, "loss": 1.5}
    assert detail["progress"] == {"step": 5, "total_steps": 20, "fraction": 0.25, "eta_seconds": 30}


def test_log_returns_the_tail_of_the_engine_log(api, project, data_root):
    run = make_run(project, state=RunState.FAILED)
    assert api.get(f"/api/runs/{run.pk}/log/").json() == {"text": "", "size": 0}
    folder = data_root / run.run_dir
    folder.mkdir(parents=True)
    lines = [f"line {index} " + "x" * 60 for index in range(2000)] + ["EngineError: config.json: bad"]
    (folder / "engine.log").write_text("\n".join(lines) + "\n")
    response = api.get(f"/api/runs/{run.pk}/log/")
    assert response["Content-Type"] == "application/json"
    data = response.json()
    assert data["size"] == (folder / "engine.log").stat().st_size > 64 * 1024
    assert data["text"].endswith("EngineError: config.json: bad\n")
    assert data["text"].startswith("line ") and len(data["text"].encode()) <= 64 * 1024


# ---- snapshots ----


def test_snapshot_is_built_then_downloaded_byte_for_byte(api, project, data_root):
    accepted_demonstrations(project, 3)
    response = api.post("/api/snapshots/", {"project": project.pk, "kind": "sft"}, format="json")
    assert response.status_code == 202 and response.json()["state"] == "building"
    snapshot_id = response.json()["id"]
    building = api.get(f"/api/snapshots/{snapshot_id}/download/")
    assert building.status_code == 409 and "still building" in building.json()["detail"]

    snapshot_build(snapshot=DatasetSnapshot.objects.get(pk=snapshot_id))  # what the default queue's task does
    data = api.get(f"/api/snapshots/{snapshot_id}/").json()
    assert data["state"] == "ready" and data["row_count"] == 3 and len(data["sha256"]) == 64
    download = api.get(f"/api/snapshots/{snapshot_id}/download/")
    assert download.status_code == 200
    body = b"".join(download.streaming_content)
    assert body == (data_root / DatasetSnapshot.objects.get(pk=snapshot_id).file_path).read_bytes()
    assert len(body) == data["size_bytes"] and download["X-Sha256"] == data["sha256"]
    assert download["X-Row-Count"] == "3" and "attachment" in download["Content-Disposition"]
    assert all("messages" in json.loads(line) for line in body.splitlines())


def test_snapshot_options_are_checked_and_a_failed_one_has_no_file(api, project):
    response = api.post("/api/snapshots/", {"project": project.pk, "kind": "prompts", "options": {"limit": 0}},
                           format="json")
    assert response.status_code == 400 and "options.limit" in response.json()["detail"]
    failed = make_snapshot(project, state=SnapshotState.FAILED)
    assert api.get(f"/api/snapshots/{failed.pk}/download/").status_code == 409
    assert [s["id"] for s in api.get("/api/snapshots/?state=failed").json()["results"]] == [failed.pk]


# ---- models ----


def test_register_a_folder_then_promote_it(api, project, data_root):
    path = model_folder(data_root, "qwen")
    response = api.post("/api/models/", {"project": project.pk, "name": "qwen", "path": path}, format="json")
    assert response.status_code == 201, response.json()
    model = response.json()
    assert model["kind"] == "base" and model["storage_path"] == "imports/qwen" and model["run"] is None
    assert model["is_current_policy"] is False and model["promotions"] == []

    promoted = api.post(f"/api/models/{model['id']}/promote/", {"reason": "a good start"}, format="json")
    assert promoted.status_code == 200
    data = promoted.json()
    assert data["is_current_policy"] is True and data["is_current_reward"] is False
    assert [(p["role"], p["reason"], p["automatic"]) for p in data["promotions"]] == [("policy", "a good start", False)]
    assert api.get("/api/models/").json()["results"][0]["is_current_policy"] is True
    refused = api.post(f"/api/models/{model['id']}/promote/", {"role": "reward"}, format="json")
    assert refused.status_code == 400 and "can't become the current reward" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"path": "/etc"}, "must lie under one of the model import roots"),
        ({"path": "DATA/empty"}, "holds no config.json"),
        ({"gguf_file": "DATA/missing.gguf"}, "does not exist"),
        ({}, "Give exactly one of path, gguf_file or tiny."),
        ({"path": "DATA/empty", "tiny": {}}, "Give exactly one of path, gguf_file or tiny."),
        ({"tiny": {"hidden_size": 65}}, "hidden_size must be a multiple of num_heads"),
        ({"tiny": {}, "name": "taken"}, "exists already"),
    ],
)
def test_register_refuses_what_it_cannot_use(api, project, data_root, body, message):
    (data_root / "empty").mkdir()
    make_model(project, name="taken")
    body = {key: value.replace("DATA", str(data_root)) if isinstance(value, str) else value for key, value in body.items()}
    response = api.post("/api/models/", {"project": project.pk, "name": "new", **body}, format="json")
    assert response.status_code == 400 and message in response.json()["detail"], response.json()


def test_a_gguf_import_or_a_tiny_model_is_a_run_whose_model_appears_later(api, project, data_root):
    (data_root / "llama.gguf").write_bytes(b"GGUF")
    gguf = api.post("/api/models/", {"project": project.pk, "name": "llama", "gguf_file": str(data_root / "llama.gguf")},
                       format="json")
    assert gguf.status_code == 202
    assert gguf.json()["kind"] == "import-gguf" and gguf.json()["output_name"] == "llama"
    assert gguf.json()["config"]["gguf_file"] == str(data_root / "llama.gguf")
    tiny = api.post("/api/models/", {"project": project.pk, "name": "tiny", "tiny": {"num_layers": 1}}, format="json")
    assert tiny.status_code == 202 and tiny.json()["kind"] == "make-tiny" and tiny.json()["config"]["num_layers"] == 1
    assert not ModelVersion.objects.filter(project=project).exists()


def test_model_detail_shows_lineage_and_the_snapshot_it_was_trained_on(api, project):
    base = make_model(project)
    snapshot = make_snapshot(project)
    run = make_run(project, state=RunState.SUCCEEDED, input_model=base, snapshot=snapshot)
    sft = make_model(project, name="sft-v1", kind=ModelKind.SFT, parent=base, run=run, snapshot=snapshot,
                     metrics={"train_loss": 1.2})
    data = api.get(f"/api/models/{sft.pk}/").json()
    assert data["parent"] == {"id": base.pk, "name": "base", "kind": "base"}
    assert data["run"] == {"id": run.pk, "kind": "sft", "state": "succeeded"}
    assert data["snapshot"] == {"id": snapshot.pk, "kind": "sft", "state": "ready", "sha256": "ab" * 32, "row_count": 0}
    assert data["metrics"] == {"train_loss": 1.2}
    assert api.get(f"/api/runs/{run.pk}/").json()["output_model"] == {"id": sft.pk, "name": "sft-v1", "kind": "sft"}


# ---- sampling jobs ----


def test_sampling_job_starts_a_sample_run_and_reports_its_state(api, project):
    policy = make_model(project, name="sft-v1", kind=ModelKind.SFT)
    response = api.post("/api/sampling-jobs/", {
        "project": project.pk, "model": policy.pk, "num_prompts": 20, "responses_per_prompt": 3,
        "config": {"max_new_tokens": 64},
    }, format="json")
    assert response.status_code == 202, response.json()
    job = response.json()
    assert job["state"] == "queued" and job["model"]["name"] == "sft-v1" and job["source"] == "queue"
    assert job["responses_per_prompt"] == 3 and job["tasks_created"] == 0
    run = api.get(f"/api/runs/{job['run']}/").json()
    assert run["kind"] == "sample" and run["sampling_job"] == job["id"]
    assert run["config"]["num_responses"] == 3 and run["config"]["max_new_tokens"] == 64
    assert api.get(f"/api/sampling-jobs/{job['id']}/").json() == job
    assert [j["id"] for j in api.get("/api/sampling-jobs/?state=queued").json()["results"]] == [job["id"]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"responses_per_prompt": 1}, "responses_per_prompt"),
        ({"num_prompts": 0}, "num_prompts"),
        ({"model": "reward"}, "A reward model scores answers"),
        ({"config": {"temperature": -1}}, "temperature must not be negative"),
    ],
)
def test_sampling_job_refuses_bad_input(api, project, change, message):
    policy = make_model(project, name="sft-v1", kind=ModelKind.SFT)
    reward = make_model(project, name="rm", kind=ModelKind.REWARD)
    body = {"project": project.pk, "model": policy.pk, "num_prompts": 5, **change}
    if body["model"] == "reward":
        body["model"] = reward.pk
    response = api.post("/api/sampling-jobs/", body, format="json")
    assert response.status_code == 400 and message in response.json()["detail"], response.json()


# ---- the loop ----


def test_loop_shows_its_policy_and_each_step(api, project):
    data = api.get(f"/api/projects/{project.pk}/loop/").json()
    assert data["enabled"] is False and data["base_model"] is None and data["preference_method"] == "reward_ppo"
    assert data["summary"] == "The loop is off: runs start only by hand."
    assert [step["key"] for step in data["steps"]] == ["sft", "preferences", "ppo", "promote", "sample"]
    sft = data["steps"][0]
    assert sft["ready"] is False and sft["waiting_for"] == "Choose a base model for the loop."
    assert sft["have"] == 0 and sft["need"] == 50 and sft["progress"] == 0.0 and sft["active_run"] is None


def test_loop_update_changes_the_fields_sent_and_keeps_the_others(api, project):
    base = make_model(project)
    response = api.put(f"/api/projects/{project.pk}/loop/", {
        "enabled": True, "base_model": base.pk, "sft_min_new_demonstrations": 2, "preference_method": "dpo",
        "config_templates": {"sft": {"num_epochs": 2}, "dpo": {"beta": 0.2}, "sample": {"max_new_tokens": 64},
                             "ppo": {"kl_coef": 0.1}},
    }, format="json")
    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["enabled"] is True and data["base_model"]["id"] == base.pk
    assert data["steps"][1]["title"] == "DPO" and data["steps"][0]["need"] == 2
    assert [step["key"] for step in data["steps"]] == ["sft", "preferences", "promote", "sample"]  # no PPO with DPO
    patched = api.patch(f"/api/projects/{project.pk}/loop/", {"auto_promote": False}, format="json").json()
    assert patched["auto_promote"] is False and patched["enabled"] is True and patched["preference_method"] == "dpo"
    policy = LoopPolicy.objects.get(project=project)
    assert policy.config_templates["dpo"] == {"beta": 0.2} and policy.sft_min_new_demonstrations == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"config_templates": {"sft": {"learning_rat": 1e-5}}}, "config_templates.sft.learning_rat"),
        ({"config_templates": {"reward": {"eval_fraction": 1.5}}}, "config_templates.reward.eval_fraction"),
        ({"config_templates": {"sft": {"model_path": "/x"}}}, "config_templates.sft.model_path"),
        ({"config_templates": {"sample": {"num_responses": 3}}}, "config_templates.sample.num_responses"),
        ({"config_templates": {"rlhf": {}}}, "config_templates.rlhf"),
        ({"config_templates": {"sft": 3}}, "config_templates.sft"),
        ({"sft_min_new_demonstrations": 0}, "sft_min_new_demonstrations"),
        ({"preference_method": "kto"}, "preference_method"),
        ({"base_model": 999_999}, "base_model"),
        ({"base_model": "reward"}, "base_model"),
    ],
)
def test_loop_update_refuses_a_bad_field_and_saves_nothing(api, project, change, field):
    reward = make_model(project, name="rm", kind=ModelKind.REWARD)
    if change.get("base_model") == "reward":
        change = {"base_model": reward.pk}
    response = api.put(f"/api/projects/{project.pk}/loop/", {"enabled": True, **change}, format="json")
    assert response.status_code == 400, response.json()
    assert field in error_fields(response.json()["errors"]), response.json()
    assert LoopPolicy.objects.filter(project=project, enabled=True).count() == 0


def test_loop_step_starts_now_whatever_its_threshold(api, project, engineer):
    base = make_model(project)
    LoopPolicy.objects.create(project=project, base_model=base)
    response = api.post(f"/api/projects/{project.pk}/loop/steps/sft/start/")
    assert response.status_code == 202, response.json()
    run = TrainingRun.objects.get(project=project)
    assert response.json()["started"] == f"sft run {run.pk}"
    assert response.json()["loop"]["steps"][0]["active_run"] == {"id": run.pk, "kind": "sft", "state": "queued"}
    assert run.trigger == "loop" and run.created_by == engineer and run.input_model == base
    again = api.post(f"/api/projects/{project.pk}/loop/steps/sft/start/")
    assert again.status_code == 400 and "already running" in again.json()["detail"]
    assert api.post(f"/api/projects/{project.pk}/loop/steps/rlhf/start/").status_code == 400
    waiting = api.post(f"/api/projects/{project.pk}/loop/steps/ppo/start/")
    assert waiting.status_code == 400 and "waits for a reward model" in waiting.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_two_identical_triggers_at_the_same_instant_make_one_run(project, engineer, api_client_for):
    base = make_model(project)
    body = {"project": project.pk, "kind": "sft", "input_model": base.pk, "config": {"num_epochs": 1}}

    def trigger(_):
        response = api_client_for(engineer).post("/api/runs/", body, format="json")
        return response.status_code, response.json()

    results = sorted(run_at_once(trigger, [0, 1]), key=lambda result: result[0])
    (created_code, created), (conflict_code, conflict) = results
    assert (created_code, conflict_code) == (202, 409), results
    assert conflict["run"] == created["id"]
    assert TrainingRun.objects.count() == 1
    assert DatasetSnapshot.objects.count() == 1  # the loser's snapshot went with its transaction
