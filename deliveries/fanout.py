"""Fan-out: which endpoints get a message, and their Delivery rows.

An endpoint matches when it belongs to the message's tenant and its event-type
filter is empty (everything) or contains the message's type. Disabled
endpoints still get a row, as ``skipped``, so the message can be recovered
to them later.
"""

from __future__ import annotations

from datetime import timedelta

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
        .only("pk", "enabled")
    )


def deliveries_for(*, message: Message, endpoints: list[Endpoint], lease_token: str) -> list[Delivery]:
    """Unsaved Delivery rows for ``message`` to each of ``endpoints``.

    Pending rows carry a dispatch lease (``lease_token``) so the scheduler
    leaves them to the on-commit hand-off unless that hand-off is lost.
    """
    now = timezone.now()
    lease_until = now + timedelta(seconds=settings.HOOKPOST_DISPATCH_LEASE_SECONDS)
    return [
        Delivery(
            tenant_id=message.tenant_id,
            message=message,
            endpoint_id=endpoint.pk,
            event_type_id=message.event_type_id,
            status=Delivery.Status.PENDING if endpoint.enabled else Delivery.Status.SKIPPED,
            next_attempt_at=now if endpoint.enabled else None,
            lease_token=lease_token if endpoint.enabled else None,
            lease_expires_at=lease_until if endpoint.enabled else None,
            created_at=now,
        )
        for endpoint in endpoints
    ]
