"""One canonical form of a username, for counting failed logins and for finding the account.

The form is NFKC (full-width letters become ASCII, compatibility characters fold), then Unicode
case folding, then NFKC again (folding can undo the first normalisation), then outer whitespace
removed: " labeler3", "Labeler3" and "ｌａｂｅｌｅｒ３" are all "labeler3". Usernames are therefore
case-insensitive. New accounts are stored in this form (admin forms); an older account stored
with capitals ("Alice") is still found by its canonical form (annotation/auth_backends.py).
"""

import unicodedata

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser


def username_normalize(username: str) -> str:
    """Return the canonical form of a username as typed."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())
    return folded.strip()


def user_find_by_username(*, username: str) -> AbstractBaseUser | None:
    """Find the one account whose username has the same canonical form as ``username``.

    An account stored in canonical form wins; otherwise a single case-insensitive match that
    normalises the same way. Two legacy accounts differing only in case match neither way round
    (rename one of them): a login must never pick between two people.
    """
    canonical = username_normalize(username)
    if not canonical:
        return None
    users = get_user_model()._default_manager
    exact = users.filter(username=canonical).first()
    if exact is not None:
        return exact
    matches = [user for user in users.filter(username__iexact=canonical)[:5]
               if username_normalize(user.get_username()) == canonical]
    return matches[0] if len(matches) == 1 else None
