from __future__ import annotations

from django.apps import AppConfig


class DeliveriesConfig(AppConfig):
    name = "deliveries"
    verbose_name = "Deliveries"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Loads the Celery tasks at start rather than on the first hand-off after a commit.
        from config.metrics import connect_signals
        from deliveries import tasks  # noqa: F401

        connect_signals()
