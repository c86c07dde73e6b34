"""Revoke a user's API tokens whenever their password changes.

Listed in AUTH_PASSWORD_VALIDATORS because Django calls every validator's ``password_changed``
from ``User.save()`` after ``set_password`` — the change-password and reset pages, the admin,
``manage.py changepassword`` alike — and not when a login merely rehashes the same password.
It validates nothing.
"""

from annotation.models import ApiTokenRevocation
from annotation.services.api_tokens import api_tokens_revoke_all


class RevokeApiTokensOnPasswordChange:
    def validate(self, password, user=None) -> None:
        return None

    def password_changed(self, password, user=None) -> None:
        if user is not None and user.pk is not None:
            api_tokens_revoke_all(user=user, reason=ApiTokenRevocation.PASSWORD)

    def get_help_text(self) -> str:
        return "Changing your password revokes all your API tokens."
