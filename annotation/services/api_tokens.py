"""Create and revoke API tokens.

Every change to a user's tokens goes through these functions, so an audit trail can record
token creation and revocation here (one call per function).
"""

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotation.models import ApiToken, ApiTokenRevocation

SECRET_PREFIX = "rlhf_"  # tells a leaked secret apart from other strings (secret scanners)
# revoked or expired tokens stay listed this long, then go when their owner creates a new one
INACTIVE_TOKENS_KEPT = timedelta(days=30)


@transaction.atomic
def api_token_create(
    *, user: AbstractBaseUser, name: str, lifetime: timedelta | None = None
) -> tuple[ApiToken, str]:
    """Create a token for ``user``; return it and its secret, which is never stored or shown again."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    now = timezone.now()
    lifetime = lifetime or timedelta(days=settings.RLHF_API_TOKEN_DAYS)
    token = ApiToken(
        user=user, name=name.strip()[:100] or "API token", digest=ApiToken.digest_of(secret),
        prefix=secret[: len(SECRET_PREFIX) + 4], expires_at=now + lifetime,
    )
    token.full_clean()
    token.save()
    ApiToken.objects.filter(user=user, expires_at__lt=now - INACTIVE_TOKENS_KEPT).delete()
    ApiToken.objects.filter(user=user, revoked_at__lt=now - INACTIVE_TOKENS_KEPT).delete()
    return token, secret


def api_token_revoke(*, token: ApiToken, reason: str = ApiTokenRevocation.OWNER) -> None:
    """Revoke one token (a no-op if it already is)."""
    if token.revoked_at is not None:
        return
    token.revoked_at, token.revoked_reason = timezone.now(), reason
    token.save(update_fields=["revoked_at", "revoked_reason"])


def api_tokens_revoke_all(*, user: AbstractBaseUser, reason: str = ApiTokenRevocation.PASSWORD) -> int:
    """Revoke every live token of ``user``; return how many were live."""
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason=reason
    )


def api_token_mark_used(*, token: ApiToken) -> None:
    """Record that the token authenticated a request, at most once a minute (a write per
    request would double the cost of reads)."""
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
