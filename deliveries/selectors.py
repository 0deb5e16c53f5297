"""Reads of the runtime domain: message and delivery history.

Every read is scoped to one tenant and ordered by the indexed
``(tenant, created_at DESC)``.
"""
from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from deliveries.models import Attempt, Delivery, Message
from webhooks.models import Tenant


def message_list(*, tenant: Tenant) -> QuerySet[Message]:
    return Message.objects.filter(tenant=tenant).select_related("event_type")


def message_get(*, tenant: Tenant, uid: str) -> Message | None:
    """The tenant's message ``uid`` with its deliveries; None if not the tenant's."""
    deliveries = Delivery.objects.select_related("endpoint", "message", "event_type").order_by("created_at", "id")
    return (
        message_list(tenant=tenant)
        .prefetch_related(Prefetch("deliveries", queryset=deliveries))
        .filter(uid=uid)
        .first()
    )


def delivery_list(*, tenant: Tenant) -> QuerySet[Delivery]:
    return Delivery.objects.filter(tenant=tenant).select_related("endpoint", "message", "event_type")


def delivery_get(*, tenant: Tenant, uid: str) -> Delivery | None:
    """The tenant's delivery ``uid`` with its attempts; None if not the tenant's."""
    attempts = Attempt.objects.order_by("number")
    return (
        delivery_list(tenant=tenant)
        .prefetch_related(Prefetch("attempts", queryset=attempts))
        .filter(uid=uid)
        .first()
    )
