"""DRF permission classes. Object checks go through annotation.selectors."""

from rest_framework.permissions import BasePermission

from annotation.selectors.projects import user_can_use_training_api


class CanUseTrainingApi(BasePermission):
    """ML engineers: users holding ``annotation.use_training_api`` (directly or through a group)."""

    message = "This endpoint is for ML engineers (permission annotation.use_training_api)."

    def has_permission(self, request, view) -> bool:
        return user_can_use_training_api(user=request.user)
