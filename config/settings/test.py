"""Settings for ``make test``: the real PostgreSQL and Redis of the machine.

TEST_DATABASE_NAME and REDIS_URL let several suites run side by side on one machine.
"""

from config.env import env_str

from .base import *  # noqa: F403
from .base import database_from_env

SECRET_KEY = "test-only-secret-key-not-for-production-0123456789abcdefghijklmnop"  # noqa: S105
DATABASES = {"default": database_from_env("postgres://postgres@127.0.0.1:5432/rlhf_studio")}
DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME", "test_rlhf_studio")}
DATABASES["default"]["CONN_MAX_AGE"] = 0

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/9")
# The cache gets its own Redis database: tests clear it, which must not drop broker queues.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("TEST_CACHE_URL", "redis://127.0.0.1:6379/10"),
    }
}
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast hashing in tests only
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
