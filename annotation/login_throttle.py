"""Count failed logins per username and per client address; refuse further tries for a while.

Used by both the login page and the token endpoint. Counters live in the shared cache
(Redis in production) so every web process sees the same figures.
"""

from django.conf import settings
from django.core.cache import cache


def _keys(username: str, address: str) -> list[str]:
    return [f"login-failures:user:{username.lower()}", f"login-failures:addr:{address}"]


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "unknown")


def login_is_blocked(*, username: str, address: str) -> bool:
    counts = cache.get_many(_keys(username, address))
    return any(count >= settings.LOGIN_FAILURE_LIMIT for count in counts.values())


def login_failure_record(*, username: str, address: str) -> None:
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    for key in _keys(username, address):
        # add() is a no-op when the key exists, so the window starts at the first failure
        cache.add(key, 0, timeout=window)
        try:
            cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.set(key, 1, timeout=window)


def login_failures_clear(*, username: str) -> None:
    """Forget the username's failures after a success. The address counter stays: one valid
    account must not reset an address that is guessing other people's passwords."""
    cache.delete(f"login-failures:user:{username.lower()}")
