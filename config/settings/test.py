"""Settings for ``make test``: the real PostgreSQL and Redis of the machine.

TEST_DATABASE_NAME and REDIS_URL let several suites run side by side on one machine.
"""

from config.env import env_int, env_str

from .base import *  # noqa: F403
from .base import database_from_env

SECRET_KEY = "test-only-secret-key-not-for-production-0123456789abcdefghijklmnop"  # noqa: S105
DATABASES = {"default": database_from_env("postgres://postgres@127.0.0.1:5432/rlhf_studio")}
DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME", "test_rlhf_studio")}
# 0: each test request opens its own connection; a test server may keep one (DATABASE_CONN_MAX_AGE), as production does
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 0)

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
# Redis redelivers a task's unacknowledged message after RLHF_BROKER_VISIBILITY_TIMEOUT (as in base; a
# reliability test shortens it), and a test worker looks for such messages every second rather than
# kombu's ~100 s (its sweep every 10 s scans only every 10th time).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("RLHF_BROKER_VISIBILITY_TIMEOUT", 3600),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast hashing in tests only
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
