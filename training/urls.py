from django.urls import path

from training import views
from training.api import evaluations as evaluation_api
from training.api import loop as loop_api
from training.api import model_versions as model_api
from training.api import reward_agreement as reward_agreement_api
from training.api import runs as run_api
from training.api import sampling as sampling_api
from training.api import snapshots as snapshot_api
from training.api import workers as worker_api

urlpatterns = [
    # pages
    path("projects/<id:project_id>/training/", views.training_home, name="training-home"),
    path("projects/<id:project_id>/training/runs/<id:run_id>/", views.run_detail, name="training-run"),
    path("projects/<id:project_id>/training/models/", views.models_page, name="training-models"),
    # API
    path("api/models/", model_api.ModelVersionListCreateApi.as_view(), name="api-training-models"),
    path("api/models/<id:model_id>/", model_api.ModelVersionDetailApi.as_view(), name="api-training-model-detail"),
    path("api/models/<id:model_id>/promote/", model_api.ModelVersionPromoteApi.as_view(), name="api-training-model-promote"),
    path("api/snapshots/", snapshot_api.DatasetSnapshotListCreateApi.as_view(), name="api-training-snapshots"),
    path("api/snapshots/<id:snapshot_id>/", snapshot_api.DatasetSnapshotDetailApi.as_view(),
         name="api-training-snapshot-detail"),
    path("api/snapshots/<id:snapshot_id>/download/", snapshot_api.DatasetSnapshotDownloadApi.as_view(),
         name="api-training-snapshot-download"),
    path("api/runs/", run_api.TrainingRunListCreateApi.as_view(), name="api-training-runs"),
    path("api/runs/<id:run_id>/", run_api.TrainingRunDetailApi.as_view(), name="api-training-run-detail"),
    path("api/runs/<id:run_id>/cancel/", run_api.TrainingRunCancelApi.as_view(), name="api-training-run-cancel"),
    path("api/runs/<id:run_id>/resume/", run_api.TrainingRunResumeApi.as_view(), name="api-training-run-resume"),
    path("api/runs/<id:run_id>/metrics/", run_api.TrainingRunMetricsApi.as_view(), name="api-training-run-metrics"),
    path("api/runs/<id:run_id>/log/", run_api.TrainingRunLogApi.as_view(), name="api-training-run-log"),
    path("api/sampling-jobs/", sampling_api.SamplingJobListCreateApi.as_view(), name="api-training-sampling-jobs"),
    path("api/sampling-jobs/<id:job_id>/", sampling_api.SamplingJobDetailApi.as_view(),
         name="api-training-sampling-job-detail"),
    path("api/evaluations/", evaluation_api.EvaluationListCreateApi.as_view(), name="api-training-evaluations"),
    path("api/evaluations/<id:evaluation_id>/", evaluation_api.EvaluationDetailApi.as_view(),
         name="api-training-evaluation-detail"),
    path("api/projects/<id:project_id>/loop/", loop_api.LoopApi.as_view(), name="api-training-loop"),
    path("api/projects/<id:project_id>/loop/steps/<slug:key>/start/", loop_api.LoopStepStartApi.as_view(),
         name="api-training-loop-step-start"),
    path("api/workers/", worker_api.GpuWorkerListApi.as_view(), name="api-training-workers"),
    path("api/projects/<id:project_id>/reward-agreement/", reward_agreement_api.RewardAgreementApi.as_view(),
         name="api-training-reward-agreement"),
]
