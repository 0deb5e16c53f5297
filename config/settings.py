"""Hookpost settings, read from the environment.

Production is the default: with ``DEBUG`` unset or false the process refuses
to start without ``SECRET_KEY``. ``make run`` sets ``DEBUG=true`` and falls
back to SQLite and an in-process cache when ``DATABASE_URL`` / ``REDIS_URL``
are unset. Only ``manage.py`` reads the ``.env`` it writes.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_int_list, env_list, env_str
from config.quiet_ticks import CELERY_LOGGERS

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

_secret_key = env_str("SECRET_KEY")
if not _secret_key:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY (or SECRET_KEY_FILE) in production, "
            "or DEBUG=true for local development."
        )
    _secret_key = "django-insecure-hookpost-development-only"
SECRET_KEY: str = _secret_key

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    # Swagger UI and Redoc served from our own static files, never from a CDN.
    "drf_spectacular_sidecar",
    "webhooks",
    "deliveries",
]

MIDDLEWARE = [
    "config.log_context.RequestIdMiddleware",
    "config.metrics.ApiMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves STATIC_ROOT (made by `collectstatic`) from the web process itself.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "config" / "templates"],
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

# --- Database -------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        # Ten minutes, not one: each worker and recorder thread holds a connection, and a minute's age
        # made all of a worker's threads reconnect together every minute, each a new
        # PostgreSQL backend warming its caches: the bench's isolation runs lost a tenth of
        # their throughput in the minute it fell in (docs/BENCHMARKS.md). Health checks
        # replace a connection the server dropped before it is used. Under DEBUG none is
        # kept: runserver serves each request on a new thread, and each thread's
        # connection stayed open for the whole age (31 backends after 100 admin pages).
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0 if DEBUG else 600),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Development only: several processes (web, worker, scheduler) share the
    # file, so wait for locks and take write locks up front.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif env_bool("DB_PGBOUNCER", False):
    # PgBouncer in transaction mode hands each transaction a different server
    # connection: no server-side cursors, no server-side prepared statements.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis / cache --------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
# Every client of Redis (broker, protection state, cache) bounds its round trips, so a
# Redis that is down or frozen costs a publish's hand-off a fraction of a second and a
# delivery's protection check as much (both go on without it), never a request's time.
REDIS_CONNECT_TIMEOUT_SECONDS = env_float("REDIS_CONNECT_TIMEOUT_SECONDS", 0.25)
REDIS_SOCKET_TIMEOUT_SECONDS = env_float("REDIS_SOCKET_TIMEOUT_SECONDS", 0.5)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "hookpost",
            "OPTIONS": {
                "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECONDS,
                "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth, i18n, static ----------------------------------------------------
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
STATIC_URL = "static/"
# `manage.py collectstatic` fills this; WhiteNoise serves it from the web process,
# gzipped, with far-future caching (the names carry a hash of the content).
STATIC_ROOT: Path | None = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Production hardening ---------------------------------------------------
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    # Production runs behind a proxy that terminates TLS and sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True
    # Off by default: TLS is the proxy's job, and internal services may publish over a
    # private network in plain http, where a redirect would drop a POST's body.
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
    # Probes and scrapers talk plain http to the process itself, past the proxy.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Hookpost cannot know what else lives under its host name: HSTS for subdomains
# (W005) and preloading (W021) are the domain owner's decisions, taken with the
# two variables above; the https redirect (W008) is the proxy's, or SECURE_SSL_REDIRECT's.
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W008", "security.W021"]

# --- REST API ----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["webhooks.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["webhooks.permissions.HasApiKey"],
    "DEFAULT_PARSER_CLASSES": ["config.api.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "config.api.pagination.DataCursorPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%S.%fZ",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Hookpost API",
    "DESCRIPTION": "Publish events, manage endpoints and inspect deliveries.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.api.schema.add_error_responses",
        "config.api.schema.add_links",
    ],
}

# --- Hookpost ----------------------------------------------------------------
# Largest accepted message payload (serialized JSON), in bytes -> 413 above it.
HOOKPOST_MAX_PAYLOAD_BYTES = env_int("HOOKPOST_MAX_PAYLOAD_BYTES", 256 * 1024)
# Largest accepted request body (a batch of messages), in bytes -> 413 above it.
HOOKPOST_MAX_REQUEST_BYTES = env_int("HOOKPOST_MAX_REQUEST_BYTES", 8 * 1024 * 1024)
HOOKPOST_MAX_BATCH_MESSAGES = env_int("HOOKPOST_MAX_BATCH_MESSAGES", 1000)
# CIDRs that bypass the private-address block of the target policy (development
# and tests only; keep empty in production).
HOOKPOST_ALLOWED_TARGET_NETWORKS = env_list("HOOKPOST_ALLOWED_TARGET_NETWORKS")
HOOKPOST_DEFAULT_TIMEOUT_SECONDS = env_int("HOOKPOST_DEFAULT_TIMEOUT_SECONDS", 15)
HOOKPOST_MAX_TIMEOUT_SECONDS = 30
HOOKPOST_SECRET_GRACE_SECONDS = env_int("HOOKPOST_SECRET_GRACE_SECONDS", 24 * 3600)
# Fernet keys (comma-separated) that encrypt endpoint secrets at rest: the first
# encrypts, all decrypt, so a new key goes first and `manage.py encrypt_secrets`
# re-encrypts (webhooks.encryption). Required in production, like SECRET_KEY;
# with DEBUG=true and no key, secrets are stored as they are.
HOOKPOST_ENCRYPTION_KEY = env_str("HOOKPOST_ENCRYPTION_KEY")
if not HOOKPOST_ENCRYPTION_KEY and not DEBUG:
    raise ImproperlyConfigured(
        "HOOKPOST_ENCRYPTION_KEY is not set: endpoint signing secrets are encrypted at rest. "
        "Set HOOKPOST_ENCRYPTION_KEY (or HOOKPOST_ENCRYPTION_KEY_FILE) to a Fernet key, made with "
        "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' "
        "(keep it: secrets encrypted with it cannot be read without it), or DEBUG=true for local development."
    )
# Django refuses request bodies above this before DRF sees them; keep it in line
# with the API's own limit so the API can answer 413 itself.
DATA_UPLOAD_MAX_MEMORY_SIZE = HOOKPOST_MAX_REQUEST_BYTES + 1024

# One JSON object per line in production (LOG_FORMAT=json); readable text in
# development. Every line carries the request id (see config.log_context).
LOG_FORMAT = env_str("LOG_FORMAT", "text" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "config.log_context.ContextFilter"},
        "quiet_ticks": {"()": "config.quiet_ticks.QuietTicks"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # Celery's lines about the scheduler tick, a few a second (config/quiet_ticks.py).
    "loggers": {name: {"filters": ["quiet_ticks"]} for name in CELERY_LOGGERS},
}

# --- Delivery engine ------------------------------------------------------------
# Delays (seconds) after attempts 1, 2, ...: 8 attempts over about 28 hours.
HOOKPOST_RETRY_SCHEDULE = env_int_list("HOOKPOST_RETRY_SCHEDULE", [5, 300, 1800, 7200, 18000, 36000, 36000])
HOOKPOST_RETRY_JITTER = env_float("HOOKPOST_RETRY_JITTER", 0.2)
HOOKPOST_RETRY_AFTER_MAX_SECONDS = env_int("HOOKPOST_RETRY_AFTER_MAX_SECONDS", 24 * 3600)
HOOKPOST_CONNECT_TIMEOUT_SECONDS = env_int("HOOKPOST_CONNECT_TIMEOUT_SECONDS", 5)
HOOKPOST_RESPONSE_MAX_BYTES = env_int("HOOKPOST_RESPONSE_MAX_BYTES", 16 * 1024)
HOOKPOST_RESPONSE_EXCERPT_BYTES = env_int("HOOKPOST_RESPONSE_EXCERPT_BYTES", 4 * 1024)
# host=address pairs resolved without DNS (like curl --resolve); development and tests.
HOOKPOST_RESOLVE = env_list("HOOKPOST_RESOLVE")
# A claimed delivery's lease: the endpoint timeout plus this margin.
HOOKPOST_LEASE_MARGIN_SECONDS = env_int("HOOKPOST_LEASE_MARGIN_SECONDS", 30)
# A queued (not yet claimed) delivery's lease: after it, the scheduler re-queues.
HOOKPOST_DISPATCH_LEASE_SECONDS = env_int("HOOKPOST_DISPATCH_LEASE_SECONDS", 120)
HOOKPOST_SCHEDULER_INTERVAL_SECONDS = env_float("HOOKPOST_SCHEDULER_INTERVAL_SECONDS", 1.0)
HOOKPOST_SCHEDULER_BATCH = env_int("HOOKPOST_SCHEDULER_BATCH", 500)
# The scheduler keeps at most this many delivery tasks (each a batch of up to
# HOOKPOST_DELIVERY_BATCH_SIZE deliveries) queued in Redis per delivery queue
# (first attempts, retries); the rest wait in PostgreSQL, so a large backlog
# costs the broker nothing.
HOOKPOST_QUEUE_TARGET_DEPTH = env_int("HOOKPOST_QUEUE_TARGET_DEPTH", 200)
HOOKPOST_MAX_INTERNAL_FAILURES = env_int("HOOKPOST_MAX_INTERNAL_FAILURES", 3)
# One delivery task carries up to this many deliveries, all to one endpoint:
# claimed, sent over one keep-alive connection and recorded together. A batch
# costs about 15 ms of worker CPU before its first send (claim, admission,
# secrets, record) on the benchmark machine: 100 makes that a sixth of a
# delivery's cost, 50 a quarter. A batch holds its payloads in memory while it
# sends (at most this many x HOOKPOST_MAX_PAYLOAD_BYTES per batch in flight).
HOOKPOST_DELIVERY_BATCH_SIZE = env_int("HOOKPOST_DELIVERY_BATCH_SIZE", 100)
# A batch starts another send only within this many seconds of its claim, so
# its lease (one timeout + margin + this budget) always covers the last send.
# Five: a batch of 100 with the default cap's 10 places needs two to a receiver
# that answers in 200 ms, five to one that takes 500 ms.
HOOKPOST_BATCH_SEND_BUDGET_SECONDS = env_float("HOOKPOST_BATCH_SEND_BUDGET_SECONDS", 5.0)
# A worker process sends on one asyncio loop (deliveries.send_loop): at most this
# many requests in flight or reserved by its batches before its tasks wait to
# claim more. A request in flight costs a socket and about 50 KB.
HOOKPOST_WORKER_MAX_IN_FLIGHT = env_int("HOOKPOST_WORKER_MAX_IN_FLIGHT", 2000)
# ...and at most this many batches sent and waiting for a recorder thread: past it the
# recorders, not the receivers, are the bottleneck, and a batch waiting longer than its
# lease's margin is sent again instead of recorded (deliveries.send_loop).
HOOKPOST_WORKER_MAX_UNRECORDED = env_int("HOOKPOST_WORKER_MAX_UNRECORDED", 200)
# A worker consuming the retry lane and not the first lowers its CPU priority by
# this much (config/worker_priority.py); 0 keeps it level with the first lane's.
HOOKPOST_RETRY_WORKER_NICENESS = env_int("HOOKPOST_RETRY_WORKER_NICENESS", 10)
# Threads per worker process that record finished batches, each with its own
# database connection: a process holds at most its Celery pool's connections
# plus these, however many requests are in flight.
HOOKPOST_RECORDER_THREADS = env_int("HOOKPOST_RECORDER_THREADS", 4)

# --- Endpoint protection (deliveries.breaker, .ratelimit, .bulkhead) ---------------
# The circuit opens after this many breaker-failures in a row (connection error,
# timeout, 5xx, 429) ...
HOOKPOST_BREAKER_FAILURE_THRESHOLD = env_int("HOOKPOST_BREAKER_FAILURE_THRESHOLD", 5)
# ... or when at least this share of at least MIN_ATTEMPTS attempts in the
# sliding window failed.
HOOKPOST_BREAKER_FAILURE_RATE = env_float("HOOKPOST_BREAKER_FAILURE_RATE", 0.5)
HOOKPOST_BREAKER_MIN_ATTEMPTS = env_int("HOOKPOST_BREAKER_MIN_ATTEMPTS", 20)
HOOKPOST_BREAKER_WINDOW_SECONDS = env_int("HOOKPOST_BREAKER_WINDOW_SECONDS", 60)
# Open for this long, doubling on each re-open up to the maximum.
HOOKPOST_BREAKER_COOLDOWN_SECONDS = env_float("HOOKPOST_BREAKER_COOLDOWN_SECONDS", 30.0)
HOOKPOST_BREAKER_MAX_COOLDOWN_SECONDS = env_float("HOOKPOST_BREAKER_MAX_COOLDOWN_SECONDS", 600.0)
# While the half-open probe is in flight, other deliveries look again this often
# (most probes answer long before their lease ends).
HOOKPOST_BREAKER_PROBE_RECHECK_SECONDS = env_float("HOOKPOST_BREAKER_PROBE_RECHECK_SECONDS", 2.0)
# Deferred deliveries wake up spread over this share of their wait (at most 5 s),
# so a crowd deferred together does not return together.
HOOKPOST_DEFER_JITTER = env_float("HOOKPOST_DEFER_JITTER", 0.1)
# Token bucket: an endpoint's rate_limit per second, with bursts of this many
# seconds' worth; work over the limit reserves a slot at most this far ahead.
HOOKPOST_RATE_LIMIT_BURST_SECONDS = env_float("HOOKPOST_RATE_LIMIT_BURST_SECONDS", 1.0)
HOOKPOST_RATE_LIMIT_MAX_RESERVE_SECONDS = env_int("HOOKPOST_RATE_LIMIT_MAX_RESERVE_SECONDS", 60)
# Bulkheads: requests in flight to one endpoint across all workers, and the
# share of one worker's slots that endpoints failing slowly (timeouts, or
# failures slower than SLOW_FAILURE_SECONDS) may hold together.
HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = env_int("HOOKPOST_ENDPOINT_MAX_IN_FLIGHT", 10)
# The largest max_in_flight an endpoint may ask for (API and admin); the default
# above applies to endpoints that ask for none.
HOOKPOST_ENDPOINT_MAX_IN_FLIGHT_LIMIT = env_int("HOOKPOST_ENDPOINT_MAX_IN_FLIGHT_LIMIT", 1000)
HOOKPOST_DEGRADED_WORKER_SHARE = env_float("HOOKPOST_DEGRADED_WORKER_SHARE", 0.5)
HOOKPOST_SLOW_FAILURE_SECONDS = env_float("HOOKPOST_SLOW_FAILURE_SECONDS", 2.0)
HOOKPOST_BULKHEAD_RETRY_SECONDS = env_float("HOOKPOST_BULKHEAD_RETRY_SECONDS", 1.0)
# An endpoint with no success for this long while failing is disabled.
HOOKPOST_AUTO_DISABLE_AFTER_SECONDS = env_int("HOOKPOST_AUTO_DISABLE_AFTER_SECONDS", 5 * 24 * 3600)
# Operational events (endpoint.disabled, message.attempt.exhausted,
# endpoint.recovered) are POSTed here, signed with the whsec_ secret, when set.
HOOKPOST_OPERATOR_WEBHOOK_URL = env_str("HOOKPOST_OPERATOR_WEBHOOK_URL") or ""
HOOKPOST_OPERATOR_WEBHOOK_SECRET = env_str("HOOKPOST_OPERATOR_WEBHOOK_SECRET") or ""
if HOOKPOST_OPERATOR_WEBHOOK_URL and not HOOKPOST_OPERATOR_WEBHOOK_SECRET:
    raise ImproperlyConfigured(
        "HOOKPOST_OPERATOR_WEBHOOK_URL is set without HOOKPOST_OPERATOR_WEBHOOK_SECRET (a whsec_ secret): "
        "operational events are only sent signed."
    )

# --- Email (tenant notices such as an endpoint disabled) --------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND") or (
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend"
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost") or "localhost"
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "") or ""
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH") or str(BASE_DIR / "var" / "mail")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Hookpost <hookpost@localhost>") or "hookpost@localhost"

# --- Celery ---------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL or "memory://"
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# `celery -A config worker` with no flags: pool threads claim, admit and start
# batches (milliseconds each); the sends run on the process's send loop. Four
# threads and HOOKPOST_RECORDER_THREADS recorders: at most 8 database connections
# per worker process (docs/operations.md, "Sizing").
CELERY_WORKER_POOL = env_str("CELERY_WORKER_POOL", "threads") or "threads"
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 4)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "maintenance"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# On a lost broker connection, tasks in flight run to the end and record their outcome
# in PostgreSQL. Cancelling them would kill the worker (the threads and solo pools
# cannot cancel: "Unrecoverable error", the process exits) or cut a request between
# sending and recording (prefork, gevent). Their messages need no redelivery: the
# leases in PostgreSQL make the scheduler hand out whatever was not finished.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Unacked messages return to the queue after this; the lease in PostgreSQL
    # re-dispatches lost work much sooner, so this only bounds duplicates.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECONDS,
    "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
    # One connection attempt when a process outside the worker's consumer opens one
    # (a publish, a queue-depth read): the hand-off never waits out a broker outage.
    "max_retries": 0,
}
# Never retry a publish: a hand-off that failed is left to the scheduler, which
# finds the deliveries due in PostgreSQL once their dispatch lease expires.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 0}
CELERY_BEAT_SCHEDULE_FILENAME = env_str("CELERY_BEAT_SCHEDULE_FILENAME") or str(
    BASE_DIR / "var" / "celerybeat-schedule"
)

# --- Retention --------------------------------------------------------------------
# Dead letters are kept at least this long, even past a tenant's retention.
HOOKPOST_DEAD_LETTER_RETENTION_DAYS = env_int("HOOKPOST_DEAD_LETTER_RETENTION_DAYS", 90)
HOOKPOST_RETENTION_BATCH_SIZE = env_int("HOOKPOST_RETENTION_BATCH_SIZE", 1000)

# --- Metrics -----------------------------------------------------------------------
HOOKPOST_METRICS_TOKEN = env_str("HOOKPOST_METRICS_TOKEN")
# Tenant ids as a metric label: only where the number of tenants is small.
HOOKPOST_METRICS_TENANT_LABELS = env_bool("HOOKPOST_METRICS_TENANT_LABELS", False)
HOOKPOST_WORKER_METRICS_PORT = env_int("HOOKPOST_WORKER_METRICS_PORT", 0)
HOOKPOST_WORKER_METRICS_ADDR = env_str("HOOKPOST_WORKER_METRICS_ADDR", "127.0.0.1") or "127.0.0.1"
