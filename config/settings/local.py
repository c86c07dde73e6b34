"""One-machine settings for ``make run``: SQLite and a filesystem broker unless told otherwise.

DEBUG stays off unless DJANGO_DEBUG=1. The secret key is generated once and kept in
var/secret_key, so sessions survive restarts without a secret committed to the repo.
"""

import secrets

from config.env import env_str

from .base import *  # noqa: F403
from .base import VAR_DIR


def _local_secret_key() -> str:
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env_str("DJANGO_SECRET_KEY") or _local_secret_key()
# Plain http on localhost: cookies can't be marked secure here.
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
