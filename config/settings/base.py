"""Settings shared by every environment. Values come from the environment (config/env.py)."""

from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF

from config.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# Runtime state of an embedded (SQLite / filesystem broker) install lives here.
VAR_DIR = Path(env_str("RLHF_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "csp",
    "annotation",
    "ranking",
    "training",
    "audit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # a database that can't be reached answers 503 + Retry-After, not a 500 with a traceback
    "config.database_outage.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def database_from_env(default_url: str) -> dict:
    """Parse ``DATABASE_URL`` (or the given default) into Django's DATABASES entry."""
    url = env_str("DATABASE_URL", default_url)
    # health checks: a persistent connection that died (PostgreSQL restarted) is replaced at the first
    # query of a request instead of failing that request (config/database_outage.py)
    config = dj_database_url.parse(url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60), conn_health_checks=True)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Web, workers and beat share one file: wait for a lock rather than fail at once, and take the
        # write lock when a transaction begins (a read that turns into a write would otherwise fail at
        # once with "database is locked" while another process writes).
        config["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
        config["CONN_MAX_AGE"] = 0
    return config


DATABASES = {"default": database_from_env(f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
# what a 503 answered while the database is unreachable asks clients to wait before trying again
RLHF_DB_RETRY_AFTER_SECONDS = env_int("RLHF_DB_RETRY_AFTER_SECONDS", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Database cache: shared by web, worker and beat without a server (login throttling needs that).
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cache_table"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # not a check: Django tells validators when a password changed; this one revokes the API tokens
    {"NAME": "annotation.password_hooks.RevokeApiTokensOnPasswordChange"},
]
# Usernames are matched in one canonical form (strip, NFKC, case fold): annotation/usernames.py.
AUTHENTICATION_BACKENDS = ["annotation.auth_backends.CanonicalUsernameBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
# Where exports, dataset snapshots and training run folders are written.
DATA_ROOT = Path(env_str("RLHF_DATA_ROOT", str(VAR_DIR / "data")))

# Uploads: imports stream from a temporary file, never held whole in memory.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
IMPORT_MAX_BYTES = env_int("RLHF_IMPORT_MAX_BYTES", 200 * 1024 * 1024)
# the import pages import a file up to this size in the request; a larger one goes to the worker as a job
IMPORT_INLINE_MAX_BYTES = env_int("RLHF_IMPORT_INLINE_MAX_BYTES", 1024 * 1024)
# an import job (on the worker) takes files up to this size: a million 4-answer tasks are ~400 MB
IMPORT_JOB_MAX_BYTES = env_int("RLHF_IMPORT_JOB_MAX_BYTES", 4 * 1024 * 1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "annotation.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # exact counts up to 20,000 rows, PostgreSQL's estimate above: a list of a big table reads one page
    "DEFAULT_PAGINATION_CLASS": "config.counting.EstimatedCountPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.exceptions.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "rlhf-studio API",
    "DESCRIPTION": "Collect demonstrations and rankings, and drive SFT / reward / PPO training.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the installed sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several components have a "kind", "state" or "role" field with different choices: name each set.
    "ENUM_NAME_OVERRIDES": {
        "ModelKindEnum": "training.models.ModelKind",
        "RunKindEnum": "training.models.RunKind",
        "TriggeredRunKindEnum": "training.api.runs.TRIGGERED_KIND_CHOICES",
        "SnapshotKindEnum": "training.models.SnapshotKind",
        "RunStateEnum": "training.models.RunState",
        "SnapshotStateEnum": "training.models.SnapshotState",
        "PromotionRoleEnum": "training.models.Promotion.Role",
        "RunTriggerEnum": "training.models.RunTrigger",
        "SamplingJobSourceEnum": "training.models.SamplingJob.Source",
        "EvaluationStateEnum": "training.models.EvaluationState",
        "RoleEnum": "annotation.models.Role",  # the name it had before training came
        "RankingImportFormatEnum": "ranking.services.imports.FORMATS",
        "ImportJobStateEnum": "ranking.models.ImportJobState",
        "ImportKindEnum": "annotation.services.imports.KINDS",
        "ImportedDialogueStatusEnum": "annotation.services.imports.IMPORTED_DIALOGUE_STATUSES",
    },
}

# Content-Security-Policy (django-csp): scripts, styles, images and fetches from our own origin only;
# no inline script, style attribute or event handler anywhere (tests/browser/test_csp_browser.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "img-src": [SELF, "data:"],  # Swagger UI and Django admin draw a few icons as data: URIs
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# Failed logins allowed per username within the window (from its first failure), then 429 until the
# window ends. A client address is locked only at a much higher count: an office shares one address.
LOGIN_FAILURE_LIMIT = env_int("RLHF_LOGIN_FAILURE_LIMIT", 5)
LOGIN_ADDRESS_FAILURE_LIMIT = env_int("RLHF_LOGIN_ADDRESS_FAILURE_LIMIT", 100)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("RLHF_LOGIN_FAILURE_WINDOW_SECONDS", 300)
# API tokens (hashed, revocable) expire this many days after they are created.
RLHF_API_TOKEN_DAYS = env_int("RLHF_API_TOKEN_DAYS", 30)

# Email (password resets): printed to the console unless an SMTP host is configured.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)  # implicit TLS (port 465); otherwise STARTTLS
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", not EMAIL_USE_SSL)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "rlhf-studio <noreply@localhost>")
PASSWORD_RESET_TIMEOUT = env_int("RLHF_PASSWORD_RESET_SECONDS", 3 * 24 * 3600)

# Celery: Redis when REDIS_URL is set, else kombu's filesystem transport (no server needed).
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
else:
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # broadcasts (worker pings, remote control) too, or kombu writes ./control in the working directory
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    CELERY_RESULT_BACKEND = f"file://{VAR_DIR / 'celery-results'}"
# Redis redelivers a message not acknowledged within this many seconds (acks_late): a training run
# outlasts it, so a duplicate message may arrive; the run's claim in the database makes it a no-op.
CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = env_int("RLHF_BROKER_VISIBILITY_TIMEOUT", 3600)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"training.tasks.gpu_*": {"queue": "gpu"}}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Default entries; the database scheduler copies them into admin, where they can be edited.
CELERY_BEAT_SCHEDULE = {
    # an expired lease holds its task's slot until reclaimed (also on each `next` of its project)
    "ranking-leases-purge-expired": {"task": "ranking.leases_purge_expired", "schedule": 60.0},
    "training-loop-tick": {"task": "training.tasks.loop_tick", "schedule": float(env_int("RLHF_LOOP_TICK_SECONDS", 60))},
    "training-runs-reconcile": {
        "task": "training.tasks.runs_reconcile", "schedule": float(env_int("RLHF_RECONCILE_SECONDS", 30))
    },
    "training-reward-checks": {
        "task": "training.tasks.reward_checks_start", "schedule": float(env_int("RLHF_REWARD_CHECK_SECONDS", 300))
    },
}
CELERY_TIMEZONE = TIME_ZONE
# Training tasks set their own (long) limits; everything else must finish within this.
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 30 * 60)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# ---- training runs on GPU workers (training/services/execution.py, reconcile.py) ----
RLHF_RUN_MAX_ATTEMPTS = env_int("RLHF_RUN_MAX_ATTEMPTS", 3)  # attempts of a run before it fails for good
RLHF_RUN_HEARTBEAT_SECONDS = env_int("RLHF_RUN_HEARTBEAT_SECONDS", 5)  # how often a worker says it is alive
# a running run whose holder has not heartbeated for this long is given back to the queue (reconciler)
RLHF_RUN_STALE_AFTER_SECONDS = env_int("RLHF_RUN_STALE_AFTER_SECONDS", 60)
# a queued run whose message sat this long while a GPU worker stood idle is sent again (lost message)
RLHF_RUN_REDISPATCH_SECONDS = env_int("RLHF_RUN_REDISPATCH_SECONDS", 60)
RLHF_SNAPSHOT_REBUILD_SECONDS = env_int("RLHF_SNAPSHOT_REBUILD_SECONDS", 600)  # a snapshot building longer is resent
RLHF_METRICS_SYNC_SECONDS = float(env_str("RLHF_METRICS_SYNC_SECONDS", "2"))  # metrics.jsonl → database
RLHF_RUN_POLL_SECONDS = float(env_str("RLHF_RUN_POLL_SECONDS", "0.5"))  # the supervisor's loop period
RLHF_GPU_TASK_TIME_LIMIT = env_int("RLHF_GPU_TASK_TIME_LIMIT", 7 * 24 * 3600)  # hard limit of one run's task
# Folders (and GGUF files) may be registered as models only from under these roots.
RLHF_MODEL_IMPORT_ROOTS = env_list("RLHF_MODEL_IMPORT_ROOTS", [str(DATA_ROOT)])
# The current reward model scores completed ranking tasks it never trained on (beat, every
# RLHF_REWARD_CHECK_SECONDS) once at least this many wait for it (training/services/reward_checks.py).
RLHF_REWARD_CHECK_MIN_TASKS = env_int("RLHF_REWARD_CHECK_MIN_TASKS", 20)
