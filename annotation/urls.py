from django.contrib.auth import views as auth_views
from django.urls import path

from annotation import api, views

urlpatterns = [
    # pages
    path("", views.dashboard, name="dashboard"),
    path("login/", views.ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("projects/<int:project_id>/", views.project_detail, name="project-detail"),
    # API
    path("api/auth/token/", api.TokenObtainApi.as_view(), name="api-token"),
    path("api/projects/", api.ProjectListApi.as_view(), name="api-project-list"),
    path("api/projects/<int:project_id>/", api.ProjectDetailApi.as_view(), name="api-project-detail"),
    path("api/projects/<int:project_id>/members/", api.ProjectMemberListApi.as_view(), name="api-project-members"),
    path("api/markdown/preview/", api.MarkdownPreviewApi.as_view(), name="api-markdown-preview"),
]
