from __future__ import annotations

from django.apps import AppConfig


class DeliveriesConfig(AppConfig):
    name = "deliveries"
    verbose_name = "Deliveries"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the on-commit hand-off from ingest to the Celery queues.
        from config.metrics import connect_signals
        from deliveries import tasks  # noqa: F401

        connect_signals()
