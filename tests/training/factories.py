"""factory_boy factories of the training app's rows (no engine runs: rows as a finished or running run leaves them)."""

import hashlib
from datetime import timedelta

import factory
from django.utils import timezone

from tests.factories import ProjectFactory
from training.models import (
    DatasetSnapshot,
    GpuWorker,
    MetricPoint,
    ModelKind,
    ModelVersion,
    RunKind,
    RunState,
    SamplingJob,
    SnapshotKind,
    SnapshotState,
    TrainingRun,
)


class DatasetSnapshotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DatasetSnapshot

    project = factory.SubFactory(ProjectFactory)
    kind = SnapshotKind.SFT
    state = SnapshotState.READY
    labels_until = factory.LazyFunction(timezone.now)
    file_path = factory.Sequence(lambda n: f"snapshots/{n}.jsonl")
    sha256 = factory.Sequence(lambda n: hashlib.sha256(f"snapshot {n}".encode()).hexdigest())
    row_count = 120
    size_bytes = 4096


class TrainingRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TrainingRun

    project = factory.SubFactory(ProjectFactory)
    kind = RunKind.SFT
    state = RunState.SUCCEEDED
    config = factory.LazyFunction(lambda: {"model_path": "/data/models/base", "train_file": "train.jsonl"})
    dedup_key = factory.Sequence(lambda n: f"manual:{n}")
    attempt = 1
    worker = "gpu-node-1:4242"
    started_at = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=12))
    finished_at = factory.LazyAttribute(
        lambda run: None if run.state in RunState.active() else run.started_at + timedelta(minutes=10)
    )
    step = 100
    total_steps = 100
    run_dir = factory.Sequence(lambda n: f"runs/test/{n}")


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelVersion

    project = factory.SubFactory(ProjectFactory)
    kind = ModelKind.BASE
    name = factory.Sequence(lambda n: f"model-{n}")
    storage_path = factory.LazyAttribute(lambda model: f"models/{model.name}")


class SamplingJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SamplingJob

    project = factory.SubFactory(ProjectFactory)
    model = factory.SubFactory(ModelVersionFactory, project=factory.SelfAttribute("..project"))
    run = factory.SubFactory(
        TrainingRunFactory, project=factory.SelfAttribute("..project"), kind=RunKind.SAMPLE,
        input_model=factory.SelfAttribute("..model"),
    )
    num_prompts = 20
    responses_per_prompt = 4
    tasks_created = 18
    tasks_skipped = 2
    ingested_at = factory.LazyFunction(timezone.now)


class GpuWorkerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GpuWorker

    hostname = factory.Sequence(lambda n: f"gpu-node-{n}:{1000 + n}")
    gpu_count = 1
    gpu_names = factory.LazyFunction(lambda: ["NVIDIA H200"])
    started_at = factory.LazyFunction(timezone.now)
    last_heartbeat = factory.LazyFunction(timezone.now)


def trained_model(project, *, kind: str, run_kind: str, name: str | None = None, parent=None, metrics=None,
                  snapshot_kind: str = SnapshotKind.SFT, **run_fields) -> ModelVersion:
    """Return a model version made by a succeeded run of ``run_kind`` on a fresh snapshot."""
    snapshot = DatasetSnapshotFactory(project=project, kind=snapshot_kind)
    metrics = metrics or {}
    run = TrainingRunFactory(
        project=project, kind=run_kind, snapshot=snapshot, input_model=parent, result={"metrics": metrics},
        **run_fields,
    )
    fields = {"name": name} if name else {}
    return ModelVersionFactory(
        project=project, kind=kind, parent=parent, run=run, snapshot=snapshot, metrics=metrics, **fields
    )


def metric_points_add(run, points: list[dict]) -> None:
    """Store logged points as the worker does: one row per step, {"step", ...figures}."""
    MetricPoint.objects.bulk_create(
        [MetricPoint(run=run, step=point["step"], values={k: v for k, v in point.items() if k != "step"},
                     logged_at=timezone.now()) for point in points]
    )
