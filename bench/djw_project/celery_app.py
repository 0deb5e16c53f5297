"""The django-webhook baseline's Celery app (``celery -A bench.djw_project.celery_app worker``)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.djw_project.settings")

app = Celery("bench_djw")
app.config_from_object("django.conf:settings", namespace="CELERY")
# django_webhook.tasks registers on ``celery.current_app`` at import: make it ours.
app.set_default()
app.autodiscover_tasks()
