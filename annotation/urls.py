from django.contrib.auth import views as auth_views
from django.urls import path

from annotation.api import audit as audit_api
from annotation.api import dialogues as dialogue_api
from annotation.api import import_jobs as import_job_api
from annotation.api import projects as project_api
from annotation.views import account as account_views
from annotation.views import audit as audit_views
from annotation.views import dialogues as dialogue_views
from annotation.views import projects as project_views

urlpatterns = [
    # pages
    path("", project_views.dashboard, name="dashboard"),
    path("login/", project_views.ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # account: API tokens, password change and reset (Django's views, our templates)
    path("account/tokens/", account_views.account_tokens, name="account-tokens"),
    path("account/tokens/<id:token_id>/revoke/", account_views.account_token_revoke, name="account-token-revoke"),
    path("account/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("account/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("password-reset/", account_views.ThrottledPasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("projects/<id:project_id>/", project_views.project_detail, name="project-detail"),
    path("projects/<id:project_id>/audit/", audit_views.project_audit, name="project-audit"),
    # demonstrations: pages
    path("my-work/", dialogue_views.my_work, name="my-work"),
    path("review/", dialogue_views.review_queue, name="review-queue"),
    path("projects/<id:project_id>/demonstrations/", dialogue_views.demonstration_start, name="demonstration-start"),
    path("projects/<id:project_id>/demonstrations/next/", dialogue_views.demonstration_next, name="demonstration-next"),
    path("projects/<id:project_id>/demonstrations/new/", dialogue_views.demonstration_new, name="demonstration-new"),
    path("projects/<id:project_id>/data/", dialogue_views.project_data, name="project-data"),
    path("projects/<id:project_id>/data/imports/<id:job_id>/", dialogue_views.project_import_job,
         name="project-import-job"),
    path("dialogues/<id:dialogue_id>/", dialogue_views.dialogue_detail, name="dialogue-detail"),
    path("dialogues/<id:dialogue_id>/edit/", dialogue_views.dialogue_edit, name="dialogue-edit"),
    path("dialogues/<id:dialogue_id>/review/", dialogue_views.dialogue_review_submit, name="dialogue-review"),
    path("dialogues/<id:dialogue_id>/discard/", dialogue_views.dialogue_discard_view, name="dialogue-discard"),
    # API
    path("api/auth/token/", project_api.TokenObtainApi.as_view(), name="api-token"),
    path("api/auth/token/revoke/", project_api.TokenRevokeApi.as_view(), name="api-token-revoke"),
    path("api/projects/", project_api.ProjectListApi.as_view(), name="api-project-list"),
    path("api/projects/<id:project_id>/", project_api.ProjectDetailApi.as_view(), name="api-project-detail"),
    path("api/projects/<id:project_id>/members/", project_api.ProjectMemberListApi.as_view(), name="api-project-members"),
    path("api/projects/<id:project_id>/audit/", audit_api.ProjectAuditListApi.as_view(), name="api-project-audit"),
    path("api/markdown/preview/", project_api.MarkdownPreviewApi.as_view(), name="api-markdown-preview"),
    # demonstrations: API
    path("api/prompts/", dialogue_api.PromptListCreateApi.as_view(), name="api-prompt-list"),
    path("api/dialogues/", dialogue_api.DialogueListCreateApi.as_view(), name="api-dialogue-list"),
    path("api/dialogues/next-prompt/", dialogue_api.DialogueNextPromptApi.as_view(), name="api-dialogue-next-prompt"),
    path("api/dialogues/review-queue/", dialogue_api.DialogueReviewQueueApi.as_view(), name="api-dialogue-review-queue"),
    path("api/dialogues/<id:dialogue_id>/", dialogue_api.DialogueDetailApi.as_view(), name="api-dialogue-detail"),
    path("api/dialogues/<id:dialogue_id>/submit/", dialogue_api.DialogueSubmitApi.as_view(), name="api-dialogue-submit"),
    path("api/dialogues/<id:dialogue_id>/review/", dialogue_api.DialogueReviewApi.as_view(), name="api-dialogue-review"),
    path("api/projects/<id:project_id>/import/", dialogue_api.ProjectImportApi.as_view(), name="api-project-import"),
    path("api/projects/<id:project_id>/import-jobs/", import_job_api.ProjectImportJobCollectionApi.as_view(),
         name="api-project-import-jobs"),
    path("api/import-jobs/<id:job_id>/", import_job_api.ProjectImportJobDetailApi.as_view(), name="api-import-job"),
    path(
        "api/projects/<id:project_id>/export/sft.jsonl",
        dialogue_api.ProjectSftExportApi.as_view(),
        name="api-project-export-sft",
    ),
]
