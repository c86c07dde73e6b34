"""DRF authentication by ``Authorization: Token <secret>`` against hashed, expiring API tokens."""

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from annotation.selectors.api_tokens import api_token_get_live
from annotation.services.api_tokens import api_token_mark_used


class ApiTokenAuthentication(TokenAuthentication):
    """The header format of DRF's TokenAuthentication (and its OpenAPI scheme); the lookup is ours.

    ``request.auth`` is the ApiToken, so an endpoint can revoke the token that called it.
    """

    keyword = "Token"

    def authenticate_credentials(self, key):
        token = api_token_get_live(secret=key)
        if token is None or not token.user.is_active:
            # one message for unknown, expired and revoked: a caller learns nothing about a guess
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        api_token_mark_used(token=token)
        return token.user, token
