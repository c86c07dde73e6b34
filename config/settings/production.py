"""Production settings: refuse to start without a real secret; HTTPS-only cookies and HSTS."""

from config.env import env_bool, env_int, env_required

from .base import *  # noqa: F403

SECRET_KEY = env_required(
    "DJANGO_SECRET_KEY",
    "production needs its own secret (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(50))'`); "
    "for a local run use DJANGO_SETTINGS_MODULE=config.settings.local (make run does).",
)

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
# /healthz is probed over plain http by the orchestrator inside the private network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
