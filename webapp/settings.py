"""Django settings for the InferOpt dashboard, read from the environment.

Every deployment knob is an environment variable with a local default, so
``make run`` works on a fresh checkout and a server only sets variables:

``INFEROPT_ENV``        ``development`` (default) or ``production``: the production profile at the end
                        of this file (HTTPS-only, HSTS, JSON logs, Redis cache; see README "Deploy with Docker")
``INFEROPT_DATA_DIR``   data folder (default ``<repo>/.local``): ``db.sqlite3``,
                        ``media/``, ``work/`` (job work dirs), ``static/``, ``secret_key``
``DATABASE_URL``        any dj-database-url URL (default sqlite in the data folder)
``DJANGO_SECRET_KEY``   else generated once into ``<data dir>/secret_key`` (required in production)
``*_FILE``              ``DJANGO_SECRET_KEY``, ``DATABASE_URL``, ``REDIS_URL``, ``INFEROPT_CACHE_URL``,
                        ``EMAIL_HOST_PASSWORD`` and the S3 keys may instead name a file holding the value
                        (Docker secrets): ``DJANGO_SECRET_KEY_FILE=/run/secrets/django_secret_key``; the file wins
``INFEROPT_S3_BUCKET``  with ``INFEROPT_S3_ENDPOINT_URL``, ``INFEROPT_S3_ACCESS_KEY_ID``, ...: uploads and artifacts
                        in S3-compatible object storage (webapp/deployment.py)
``INFEROPT_API_MAX_JSON_BYTES``  largest JSON body the REST API reads (1 MiB; 413 above)
``DJANGO_DEBUG``        bool, default false
``DJANGO_ALLOWED_HOSTS`` comma-separated, default ``127.0.0.1,localhost``
``REDIS_URL``           Celery broker (default ``redis://127.0.0.1:6379/0``)
``INFEROPT_CACHE_URL``  Redis database for the cache shared by every process (production default: ``REDIS_URL``)
``INFEROPT_JOB_SOFT_TIME_LIMIT`` / ``INFEROPT_JOB_HARD_TIME_LIMIT``  seconds (3600 / 3900)
``INFEROPT_JOB_MAX_ATTEMPTS``   claims of a job whose worker process died before it is failed (3)
``INFEROPT_UPLOAD_MAX_BYTES``    largest accepted upload (2 GiB)
``INFEROPT_INPUT_CACHE_DIR``     local cache of uploads fetched from storage (``<data>/inputs``; ``off``)
``INFEROPT_LOGIN_MAX_FAILURES`` / ``INFEROPT_LOGIN_WINDOW_S``  failed sign-ins per username and
                        address before a lockout, and its window in seconds (5 / 900)
``INFEROPT_QUICK_BENCHMARK``     bool: jobs use the short benchmark settings (tests)
``INFEROPT_GPU_QUEUE_ENABLED``   bool (false): a worker consumes the ``gpu`` queue, so passes that
                        prefer a GPU (gptq, awq, w8a8) are sent there; else they go to ``cpu``
``INFEROPT_WORKER_HEARTBEAT_S`` / ``INFEROPT_WORKER_LIVE_TIMEOUT_S``  worker capability heartbeat and
                        how long a silent worker still counts as live (30 / 120 s)
``INFEROPT_CPU_PASS_TIME_BUDGET_S``  read by the workers (optimizers library): a pass whose
                        estimate exceeds it on a CPU worker is refused in preflight (3600)
``INFEROPT_BASE_URL``   the dashboard's address, for links in notifications (``http://127.0.0.1:8000``)
``INFEROPT_WEBHOOK_TIMEOUT_S``   seconds a team webhook may take (5)
``DJANGO_EMAIL_BACKEND``  Django mail backend (console); ``EMAIL_HOST``/``EMAIL_PORT``, ``DJANGO_DEFAULT_FROM_EMAIL``
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from webapp.deployment import env_secret, proxy_ssl_header, redis_cache, s3_storage


def envbool(name: str, default: str) -> bool:
    """``yes``/``true``/``1``/``on`` → True; ``no``/``false``/``0``/``off``/empty → False."""
    value = os.getenv(name, default).strip().lower()
    if value in ("yes", "true", "1", "on"):
        return True
    if value in ("no", "false", "0", "off", ""):
        return False
    raise ValueError(f"{name} must be a boolean (true/false), got {value!r}")


def envint(name: str, default: str) -> int:
    return int(os.getenv(name, default))


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


# "production" switches on the profile at the end of this file; everything before it is the same in both.
INFEROPT_ENV = os.getenv("INFEROPT_ENV", "development").strip().lower() or "development"
if INFEROPT_ENV not in ("development", "production"):
    raise ImproperlyConfigured(f"INFEROPT_ENV must be development or production, got {INFEROPT_ENV!r}")
PRODUCTION = INFEROPT_ENV == "production"

BASE_DIR = Path(__file__).resolve().parent.parent
INFEROPT_DATA_DIR = Path(os.getenv("INFEROPT_DATA_DIR") or BASE_DIR / ".local").resolve()
INFEROPT_WORK_DIR = INFEROPT_DATA_DIR / "work"
for _folder in (INFEROPT_DATA_DIR, INFEROPT_DATA_DIR / "static", INFEROPT_DATA_DIR / "tmp"):
    _folder.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    if key := env_secret("DJANGO_SECRET_KEY"):
        return key
    if PRODUCTION:
        # Every web process and worker host must share one key: never generate it per host.
        raise ImproperlyConfigured("INFEROPT_ENV=production needs DJANGO_SECRET_KEY or DJANGO_SECRET_KEY_FILE")
    path = INFEROPT_DATA_DIR / "secret_key"
    if not path.exists():
        try:
            # O_EXCL: two processes starting at once must not write different keys.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = envbool("DJANGO_DEBUG", "false")
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS", "")

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
    "webapp.accounts",
    "webapp.catalog",
    "webapp.jobs",
    "webapp.reviews",
    "webapp.costs",
    "webapp.fleet",
]

MIDDLEWARE = [
    "webapp.health.HealthCheckMiddleware",  # first: /healthz answers before host checks and HTTPS redirects
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "webapp.reviews.middleware.AuditActorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"
ASGI_APPLICATION = "webapp.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "webapp" / "templates"],
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

DATABASES = {
    "default": dj_database_url.parse(
        env_secret("DATABASE_URL", default=f"sqlite:///{INFEROPT_DATA_DIR / 'db.sqlite3'}"),
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", "0"),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker and the web process write the same file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Failed sign-ins per (username, client address) before that pair is locked out for the
# rest of the window (webapp/accounts/ratelimit.py); counts live in the default cache.
INFEROPT_LOGIN_MAX_FAILURES = envint("INFEROPT_LOGIN_MAX_FAILURES", "5")
INFEROPT_LOGIN_WINDOW_S = envint("INFEROPT_LOGIN_WINDOW_S", "900")
AUTHENTICATION_BACKENDS = ["webapp.accounts.ratelimit.RateLimitedModelBackend"]

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/jobs/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Static files: our own under webapp/static, plotly.js straight from the installed
# plotly package (see webapp.staticfinders), all served by WhiteNoise. Finders are
# used at run time too, so `collectstatic` is optional.
STATIC_URL = "/static/"
STATIC_ROOT = INFEROPT_DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "webapp" / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "webapp.staticfinders.PlotlyFinder",
]
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# S3-compatible object storage for uploads and artifacts when INFEROPT_S3_BUCKET is set (any profile).
if _s3_storage := s3_storage():
    STORAGES["default"] = _s3_storage

MEDIA_ROOT = INFEROPT_DATA_DIR / "media"
MEDIA_URL = "/media-not-served/"  # artifacts are downloaded through permission-checked views only
# Verified local copies of uploads fetched from the default storage, by sha256 (webapp/catalog/storage.py).
# Each host keeps its own; "off" turns the cache off (workers then fetch into each job's work folder).
# Empty: <INFEROPT_DATA_DIR>/inputs, wherever the data folder is at the time.
INFEROPT_INPUT_CACHE_DIR = os.getenv("INFEROPT_INPUT_CACHE_DIR", "").strip()

# Uploads always stream to disk in chunks; the handler stops a request as soon as
# it passes INFEROPT_UPLOAD_MAX_BYTES.
INFEROPT_UPLOAD_MAX_BYTES = envint("INFEROPT_UPLOAD_MAX_BYTES", str(2 * 1024**3))
INFEROPT_UPLOAD_MAX_EXTRACTED_BYTES = envint("INFEROPT_UPLOAD_MAX_EXTRACTED_BYTES", str(2 * INFEROPT_UPLOAD_MAX_BYTES))
INFEROPT_UPLOAD_MAX_FILES = envint("INFEROPT_UPLOAD_MAX_FILES", "10000")
FILE_UPLOAD_HANDLERS = ["webapp.catalog.uploads.LimitedTemporaryFileUploadHandler"]
FILE_UPLOAD_TEMP_DIR = INFEROPT_DATA_DIR / "tmp"
FILE_UPLOAD_PERMISSIONS = 0o640
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
DATA_UPLOAD_MAX_NUMBER_FILES = 100

# Celery (read by workers/celery.py with namespace="CELERY"). The job row is the
# record of a run, so there is no result backend.
REDIS_URL = env_secret("REDIS_URL", "redis://127.0.0.1:6379/0")
INFEROPT_JOB_SOFT_TIME_LIMIT = envint("INFEROPT_JOB_SOFT_TIME_LIMIT", "3600")
INFEROPT_JOB_HARD_TIME_LIMIT = envint("INFEROPT_JOB_HARD_TIME_LIMIT", "3900")
# A job whose worker process dies (kill -9, out of memory) is run again when its message is
# redelivered, at most this many claims in all; then it is failed (workers/tasks.py).
INFEROPT_JOB_MAX_ATTEMPTS = envint("INFEROPT_JOB_MAX_ATTEMPTS", "3")
INFEROPT_QUICK_BENCHMARK = envbool("INFEROPT_QUICK_BENCHMARK", "false")
# No worker registers its capabilities yet: whether a GPU worker consumes the "gpu" queue is
# configured. Off, GPU-preferring passes run on "cpu" when their estimate fits the worker.
INFEROPT_GPU_QUEUE_ENABLED = envbool("INFEROPT_GPU_QUEUE_ENABLED", "false")
# Worker capability registry (webapp/fleet): each worker re-probes and writes its row every
# HEARTBEAT seconds; a worker silent for LIVE_TIMEOUT seconds no longer counts for routing.
INFEROPT_WORKER_HEARTBEAT_S = envint("INFEROPT_WORKER_HEARTBEAT_S", "30")
INFEROPT_WORKER_LIVE_TIMEOUT_S = envint("INFEROPT_WORKER_LIVE_TIMEOUT_S", "120")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": INFEROPT_JOB_HARD_TIME_LIMIT + 600,
    "socket_connect_timeout": 5,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_SOFT_TIME_LIMIT = INFEROPT_JOB_SOFT_TIME_LIMIT
CELERY_TASK_TIME_LIMIT = INFEROPT_JOB_HARD_TIME_LIMIT
CELERY_TASK_ALWAYS_EAGER = False
# A running job survives a broker restart: it keeps running and records its end in the database
# (Celery 6 is to change this default to cancelling such tasks).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Publishing from a web request must fail fast when Redis is down, not hang the page.
INFEROPT_ENQUEUE_MAX_RETRIES = envint("INFEROPT_ENQUEUE_MAX_RETRIES", "2")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "webapp.accounts.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "webapp.parsers.LimitedJSONParser",  # JSONParser reading at most INFEROPT_API_MAX_JSON_BYTES
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "webapp.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

# The REST API's own cap on JSON bodies (413 above it; webapp/parsers.py), below Django's
# DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB, 400), which applies first.
INFEROPT_API_MAX_JSON_BYTES = envint("INFEROPT_API_MAX_JSON_BYTES", str(1024**2))

SPECTACULAR_SETTINGS = {
    "TITLE": "InferOpt API",
    "DESCRIPTION": (
        "Submit optimization recipes, follow jobs and download artifacts. "
        "Authenticate with `Authorization: Bearer <token>` (create one with "
        "`python manage.py api_token USERNAME`)."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}

# Reviewer notifications (webapp/reviews): e-mail through Django's mail backend, printed to the
# console unless configured, plus each team's optional webhook.
INFEROPT_BASE_URL = os.getenv("INFEROPT_BASE_URL", "http://127.0.0.1:8000")
INFEROPT_WEBHOOK_TIMEOUT_S = float(os.getenv("INFEROPT_WEBHOOK_TIMEOUT_S", "5"))
EMAIL_BACKEND = os.getenv("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.getenv("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", "25")
EMAIL_HOST_USER = os.getenv("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "false")
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = os.getenv("DJANGO_DEFAULT_FROM_EMAIL", "inferopt@localhost")

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = envbool("DJANGO_SECURE_COOKIES", "false")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.getenv("INFEROPT_LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "WARNING"}},
}

# One cache for every process and host when INFEROPT_CACHE_URL names a Redis database of its own
# (cache.clear() empties it): the login rate limit (webapp/accounts/ratelimit.py) is then shared, and
# the figures workers build for a finished job's page (webapp/jobs/figure_cache.py) reach every web
# process. Without it each process has its own memory cache. `make run` sets it to its private Redis.
_cache_url = env_secret("INFEROPT_CACHE_URL")

# --- Production profile (INFEROPT_ENV=production) ---------------------------------------------------
# What docker/docker-compose.yml runs. `manage.py check --deploy` reports nothing with the defaults below
# (tests/webapp/test_production_settings.py). Behind a TLS-terminating proxy, set
# DJANGO_SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto (only if the proxy always sets that header).
if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("DJANGO_DEBUG must be false when INFEROPT_ENV=production")
    SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", "true")
    SECURE_HSTS_SECONDS = envint("DJANGO_SECURE_HSTS_SECONDS", str(365 * 24 * 3600))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", "true")
    SECURE_HSTS_PRELOAD = envbool("DJANGO_SECURE_HSTS_PRELOAD", "true")
    SECURE_PROXY_SSL_HEADER = proxy_ssl_header(os.getenv("DJANGO_SECURE_PROXY_SSL_HEADER", ""))
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = envbool("DJANGO_SECURE_COOKIES", "true")
    # Production always shares its cache (below): falls back to the broker's Redis.
    _cache_url = _cache_url or env_secret("REDIS_URL")
    # Workers log through LOGGING too, instead of Celery replacing the root logger's handlers.
    CELERY_WORKER_HIJACK_ROOT_LOGGER = False
if _cache_url:
    CACHES = redis_cache(_cache_url)

# Structured logs: one JSON object per line (webapp/logs.py); the default in production.
INFEROPT_LOG_FORMAT = os.getenv("INFEROPT_LOG_FORMAT", "json" if PRODUCTION else "text").strip().lower()
if INFEROPT_LOG_FORMAT == "json":
    LOGGING["formatters"] = {"json": {"()": "webapp.logs.JsonFormatter"}}
    LOGGING["handlers"]["console"]["formatter"] = "json"
elif INFEROPT_LOG_FORMAT != "text":
    raise ImproperlyConfigured(f"INFEROPT_LOG_FORMAT must be json or text, got {INFEROPT_LOG_FORMAT!r}")
