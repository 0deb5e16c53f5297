from __future__ import annotations

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhook configuration"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from webhooks import encryption

        # A malformed key stops every process at start, not at the first secret it reads.
        encryption.check_keys()
