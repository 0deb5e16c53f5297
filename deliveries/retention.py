"""Retention: forget history older than each tenant's ``retention_days``.

Deleted, oldest first, in small batches (each its own short transaction), so
the purge never holds locks on the big tables for long and can run while
traffic flows:

- finished deliveries (succeeded, skipped) and their attempts older than the
  tenant's retention;
- dead letters only after ``HOOKPOST_DEAD_LETTER_RETENTION_DAYS`` (longer by
  default: they are what a tenant still has to act on);
- messages older than the retention once no delivery of theirs is left, which
  purges their payloads.

Pending and failed (retry scheduled) deliveries are never purged: they are
work in progress, not history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from deliveries.models import Attempt, Delivery, Message
from webhooks.models import Tenant

logger = logging.getLogger(__name__)

PURGEABLE = (Delivery.Status.SUCCEEDED, Delivery.Status.SKIPPED)


@dataclass
class PurgeReport:
    deliveries: int = 0
    attempts: int = 0
    messages: int = 0


def purge_expired(*, now: datetime | None = None, batch_size: int | None = None) -> PurgeReport:
    """Purge every tenant's expired history; returns what was deleted."""
    now = now or timezone.now()
    batch = batch_size or settings.HOOKPOST_RETENTION_BATCH_SIZE
    report = PurgeReport()
    for tenant in Tenant.objects.only("pk", "uid", "retention_days"):
        cutoff = now - timedelta(days=tenant.retention_days)
        dead_cutoff = now - timedelta(
            days=max(settings.HOOKPOST_DEAD_LETTER_RETENTION_DAYS, tenant.retention_days)
        )
        finished = Delivery.objects.filter(tenant=tenant, status__in=PURGEABLE, created_at__lt=cutoff)
        dead = Delivery.objects.filter(tenant=tenant, status=Delivery.Status.DEAD, created_at__lt=dead_cutoff)
        for queryset in (finished, dead):
            _purge_deliveries(queryset, batch, report)
        orphans = Message.objects.filter(tenant=tenant, created_at__lt=cutoff).filter(
            ~Exists(Delivery.objects.filter(message=OuterRef("pk")))
        )
        report.messages += _delete_in_batches(orphans, batch)
    if report.deliveries or report.messages:
        logger.info(
            "retention purged %d deliveries, %d attempts, %d messages",
            report.deliveries,
            report.attempts,
            report.messages,
        )
    return report


def _purge_deliveries(queryset: QuerySet[Delivery], batch: int, report: PurgeReport) -> None:
    while True:
        with transaction.atomic():
            ids = list(queryset.order_by("created_at").values_list("pk", flat=True)[:batch])
            if not ids:
                return
            report.attempts += Attempt.objects.filter(delivery_id__in=ids).delete()[0]
            report.deliveries += Delivery.objects.filter(pk__in=ids).delete()[0]


def _delete_in_batches(queryset: QuerySet[Message], batch: int) -> int:
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(queryset.order_by("created_at").values_list("pk", flat=True)[:batch])
            if not ids:
                return deleted
            deleted += Message.objects.filter(pk__in=ids).delete()[0]
