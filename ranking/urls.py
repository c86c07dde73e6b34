from django.urls import path

from ranking import api, api_import_jobs, views

urlpatterns = [
    # pages
    path("projects/<id:project_id>/rank/", views.rank_next, name="ranking-rank"),
    path("projects/<id:project_id>/ranking/stats/", views.my_stats, name="ranking-my-stats"),
    path("projects/<id:project_id>/ranking/quality/", views.quality, name="ranking-quality"),
    path("projects/<id:project_id>/ranking/import/", views.import_tasks, name="ranking-import"),
    path("projects/<id:project_id>/ranking/import/<id:job_id>/", views.import_job, name="ranking-import-job"),
    # API
    path("api/ranking-tasks/", api.RankingTaskCollectionApi.as_view(), name="api-ranking-tasks"),
    path("api/ranking-tasks/next/", api.RankingTaskNextApi.as_view(), name="api-ranking-task-next"),
    path("api/ranking-tasks/import/", api.RankingTaskImportApi.as_view(), name="api-ranking-task-import"),
    path(
        "api/projects/<id:project_id>/ranking-imports/",
        api_import_jobs.RankingImportJobCollectionApi.as_view(),
        name="api-ranking-import-jobs",
    ),
    path(
        "api/ranking-imports/<id:job_id>/", api_import_jobs.RankingImportJobDetailApi.as_view(),
        name="api-ranking-import-job",
    ),
    path("api/ranking-tasks/<id:task_id>/", api.RankingTaskDetailApi.as_view(), name="api-ranking-task-detail"),
    path("api/ranking-tasks/<id:task_id>/skip/", api.RankingTaskSkipApi.as_view(), name="api-ranking-task-skip"),
    path("api/ranking-tasks/<id:task_id>/rankings/", api.RankingSubmitApi.as_view(), name="api-ranking-submit"),
    path("api/ranking-tasks/<id:task_id>/gold/", api.RankingTaskGoldApi.as_view(), name="api-ranking-task-gold"),
    path(
        "api/projects/<id:project_id>/export/preferences.jsonl",
        api.PreferenceExportApi.as_view(),
        name="api-ranking-export-preferences",
    ),
    path("api/projects/<id:project_id>/export/hh-rlhf.jsonl", api.HhRlhfExportApi.as_view(), name="api-ranking-export-hh"),
    path("api/projects/<id:project_id>/ranking-stats/me/", api.RankingStatsMeApi.as_view(), name="api-ranking-stats-me"),
    path("api/projects/<id:project_id>/ranking-quality/", api.RankingQualityApi.as_view(), name="api-ranking-quality"),
]
