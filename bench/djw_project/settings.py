"""Settings of the django-webhook baseline project: its defaults, our database and broker."""

from __future__ import annotations

import os

import dj_database_url

SECRET_KEY = "bench-only-django-webhook-baseline"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_webhook"]
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hookpost_bench"),
        # The same persistent connections Hookpost's worker gets.
        conn_max_age=60,
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Webhooks fire on every save of auth.Group: the driver creates one Group per event.
DJANGO_WEBHOOK = {"MODELS": ["auth.Group"]}
CELERY_BROKER_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
CELERY_TASK_DEFAULT_QUEUE = "bench.djw"
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
