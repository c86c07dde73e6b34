"""Reads for annotation: projects and roles (``projects``), demonstrations (``dialogues``).

The project selectors are re-exported here on purpose: they are the permission checks other apps
(ranking, training) call as ``from annotation.selectors import project_get_for_user``, and that
short path stays their public entry point. Inside annotation, import from the submodules. Nothing
else is re-exported; dialogue selectors are imported from ``annotation.selectors.dialogues``.
"""

from annotation.selectors.projects import (
    membership_get,
    membership_list_for_user,
    project_get_for_user,
    project_list_for_user,
    project_list_for_user_detailed,
    project_members,
    user_can_use_training_api,
    user_has_role,
    user_manages_project_data,
)

__all__ = [
    "membership_get",
    "membership_list_for_user",
    "project_get_for_user",
    "project_list_for_user",
    "project_list_for_user_detailed",
    "project_members",
    "user_can_use_training_api",
    "user_has_role",
    "user_manages_project_data",
]
