"""Fan-out: which endpoints get a message, and their Delivery rows.

An endpoint matches when it belongs to the message's tenant and its event-type
filter is empty (everything) or contains the message's type. Disabled
endpoints still get a row, as ``skipped``, so the message can be recovered
to them later.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from deliveries.models import Delivery, Message
from webhooks.models import Endpoint, EventType, Tenant


def matching_endpoints(*, tenant: Tenant, event_type: EventType) -> QuerySet[Endpoint]:
    through = Endpoint.event_types.through
    has_filter = through.objects.filter(endpoint_id=OuterRef("pk"))
    subscribed = has_filter.filter(eventtype_id=event_type.pk)
    return (
        Endpoint.objects.filter(tenant=tenant)
        .filter(~Exists(has_filter) | Q(Exists(subscribed)))
        # What routing a fresh delivery reads (``lanes.lane_of_fresh``), besides the row's own
        .only("pk", "uid", "enabled", "consecutive_failures", "circuit_state", "last_success_at")
    )


def delivery_rows(
    *,
    message: Message,
    endpoints: list[Endpoint],
    lease_token: str,
    unleased: Collection[int] = frozenset(),
) -> list[dict[str, Any]]:
    """The Delivery rows (by field attname) for ``message`` to each of ``endpoints``.

    Pending rows carry a dispatch lease (``lease_token``) so the scheduler
    leaves them to the on-commit hand-off unless that hand-off is lost;
    those to the endpoints (pks) in ``unleased`` are written due and
    unleased instead: the scheduler's from the start (ingest writes the
    retry lane's work this way, see ``deliveries.services._publish``).
    Plain rows, for ``deliveries.copy_insert``: a request's fan-out is
    written without building a model instance per delivery.
    """
    now = timezone.now()
    lease_until = now + timedelta(seconds=settings.HOOKPOST_DISPATCH_LEASE_SECONDS)
    pending, skipped = Delivery.Status.PENDING.value, Delivery.Status.SKIPPED.value
    return [
        {
            "tenant_id": message.tenant_id,
            "message_id": message.pk,
            "endpoint_id": endpoint.pk,
            "event_type_id": message.event_type_id,
            "status": pending if endpoint.enabled else skipped,
            "next_attempt_at": now if endpoint.enabled else None,
            "lease_token": lease_token if leased else None,
            "lease_expires_at": lease_until if leased else None,
            "created_at": now,
            "updated_at": now,
        }
        for endpoint in endpoints
        for leased in [endpoint.enabled and endpoint.pk not in unleased]
    ]


def deliveries_for(*, message: Message, endpoints: list[Endpoint], lease_token: str) -> list[Delivery]:
    """Unsaved Delivery instances of ``delivery_rows``."""
    rows = delivery_rows(message=message, endpoints=endpoints, lease_token=lease_token)
    return [Delivery(**row) for row in rows]
