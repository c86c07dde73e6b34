"""Count failed logins per username and per client address; refuse further tries for a while.
Also count password-reset requests (at the end).

Used by both the login page and the token endpoint. A username is locked after
LOGIN_FAILURE_LIMIT failures within LOGIN_FAILURE_WINDOW_SECONDS of its first failure; a client
address only after LOGIN_ADDRESS_FAILURE_LIMIT failures (much higher: an office shares one
address, and one person's typos must not lock out everyone behind it). Usernames are counted in
their canonical form (annotation/usernames.py), the same form that authentication looks up, so
" labeler3" and "ｌａｂｅｌｅｒ３" spend labeler3's tries.

Counters live in the shared cache (Redis in production) so every web process sees the same
figures. Each counter has a companion key holding the time of its first failure, which gives
the Retry-After of a lock.
"""

import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from annotation.usernames import username_normalize


@dataclass(frozen=True)
class LoginBlock:
    """Why further logins are refused, and for how many more seconds."""

    scope: str  # "username", "address" or "reset"
    retry_after: int

    @property
    def message(self) -> str:
        wait = _minutes_phrase(self.retry_after)
        if self.scope == "username":
            return f"Too many failed logins for this username. Try again in {wait}."
        if self.scope == "reset":
            return f"Too many password-reset emails asked for. Try again in {wait}."
        return f"Too many failed logins from your network address. Try again in {wait}."


def _minutes_phrase(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = math.ceil(seconds / 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def _username_key(username: str) -> str:
    # hashed: any text is a safe, short cache key
    digest = hashlib.sha256(username_normalize(username).encode()).hexdigest()[:32]
    return f"login-failures:user:{digest}"


def _address_key(address: str) -> str:
    return f"login-failures:addr:{address}"


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "unknown")


def _retry_after(since: float | None, window: int | None = None) -> int:
    window = window or settings.LOGIN_FAILURE_WINDOW_SECONDS
    if since is None:
        return window
    return max(1, math.ceil(since + window - time.time()))


def login_block_get(*, username: str, address: str) -> LoginBlock | None:
    """Return the lock on this username or address, or None when a try is allowed."""
    user_key, address_key = _username_key(username), _address_key(address)
    keys = [user_key, f"{user_key}:since", address_key, f"{address_key}:since"]
    values = cache.get_many(keys)
    if values.get(user_key, 0) >= settings.LOGIN_FAILURE_LIMIT:
        return LoginBlock("username", _retry_after(values.get(f"{user_key}:since")))
    if values.get(address_key, 0) >= settings.LOGIN_ADDRESS_FAILURE_LIMIT:
        return LoginBlock("address", _retry_after(values.get(f"{address_key}:since")))
    return None


def _count(key: str, window: int | None = None) -> int:
    window = window or settings.LOGIN_FAILURE_WINDOW_SECONDS
    # add() is a no-op when the key exists, so the window starts at the first failure
    cache.add(f"{key}:since", time.time(), timeout=window)
    cache.add(key, 0, timeout=window)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add() and incr()
        cache.set(key, 1, timeout=window)
        return 1


def login_failure_record(*, username: str, address: str) -> int:
    """Count one failure for the username and the address; return the username's tries left."""
    failures = _count(_username_key(username))
    _count(_address_key(address))
    return max(0, settings.LOGIN_FAILURE_LIMIT - failures)


def login_failures_clear(*, username: str) -> None:
    """Forget the username's failures after a success. The address counter stays: one valid
    account must not reset an address that is guessing other people's passwords."""
    key = _username_key(username)
    cache.delete_many([key, f"{key}:since"])


# Password-reset emails: a few per email address and hour (nobody's inbox gets flooded through us),
# more per client address (an office asks on behalf of many people).
PASSWORD_RESET_WINDOW_SECONDS = 3600
PASSWORD_RESETS_PER_EMAIL = 3
PASSWORD_RESETS_PER_ADDRESS = 20


def _reset_keys(email: str, address: str) -> tuple[str, str]:
    digest = hashlib.sha256(email.strip().casefold().encode()).hexdigest()[:32]
    return f"password-resets:email:{digest}", f"password-resets:addr:{address}"


def password_reset_block_get(*, email: str, address: str) -> LoginBlock | None:
    """Return a lock when this email or address asked for too many reset emails this hour."""
    email_key, address_key = _reset_keys(email, address)
    values = cache.get_many([email_key, f"{email_key}:since", address_key, f"{address_key}:since"])
    for key, limit in ((email_key, PASSWORD_RESETS_PER_EMAIL), (address_key, PASSWORD_RESETS_PER_ADDRESS)):
        if values.get(key, 0) >= limit:
            return LoginBlock("reset", _retry_after(values.get(f"{key}:since"), PASSWORD_RESET_WINDOW_SECONDS))
    return None


def password_reset_record(*, email: str, address: str) -> None:
    """Count one reset request (sent or not: the page never says whether the address exists)."""
    for key in _reset_keys(email, address):
        _count(key, PASSWORD_RESET_WINDOW_SECONDS)
