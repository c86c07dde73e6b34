"""Reads for API tokens: the one a request presents, and an owner's list."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from annotation.models import ApiToken


def api_token_get_live(*, secret: str) -> ApiToken | None:
    """Return the live (not revoked, not expired) token with this secret, its user loaded."""
    return (
        ApiToken.objects.select_related("user")
        .filter(digest=ApiToken.digest_of(secret), revoked_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )


def api_token_list_for_owner(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """Every token of ``user`` still kept, newest first."""
    return ApiToken.objects.filter(user=user).order_by("-created_at")


def api_token_get_for_owner(*, user: AbstractBaseUser, token_id: int) -> ApiToken:
    """The user's own token, or 404 (another person's token answers like a missing one)."""
    return get_object_or_404(ApiToken, pk=token_id, user=user)
