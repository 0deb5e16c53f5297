from __future__ import annotations

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhook configuration"
    default_auto_field = "django.db.models.BigAutoField"
