"""Reads of the runtime domain: message and delivery history.

Every read is scoped to one tenant and ordered by the indexed
``(tenant, created_at DESC)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from deliveries import breaker
from deliveries.models import Attempt, Delivery, Message
from webhooks.models import Endpoint, Tenant


def message_list(*, tenant: Tenant) -> QuerySet[Message]:
    return Message.objects.filter(tenant=tenant).select_related("event_type")


def message_get(*, tenant: Tenant, uid: str) -> Message | None:
    """The tenant's message ``uid`` with its deliveries; None if not the tenant's."""
    deliveries = Delivery.objects.select_related("endpoint", "message", "event_type").order_by(
        "created_at", "id"
    )
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


@dataclass(frozen=True)
class EndpointHealth:
    """How an endpoint is doing: its circuit, its run of failures, the last 24 hours."""

    endpoint_id: str
    enabled: bool
    disabled_reason: str
    disabled_at: datetime | None
    circuit_state: str
    circuit_changed_at: datetime | None
    circuit_retry_at: datetime | None  # open: when it may half-open
    circuit_cooldown_seconds: float | None
    consecutive_failures: int
    failing_since: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    attempts_24h: int
    succeeded_24h: int
    failed_24h: int
    success_rate_24h: float | None  # None without attempts


def endpoint_health(*, endpoint: Endpoint, now: datetime | None = None) -> EndpointHealth:
    """The endpoint's health: the breaker's live state from Redis (the row's
    mirror when Redis is unavailable) and its attempts of the last 24 hours."""
    now = now or timezone.now()
    stats = Attempt.objects.filter(
        delivery__endpoint=endpoint, started_at__gte=now - timedelta(hours=24)
    ).aggregate(
        total=Count("pk"), ok=Count("pk", filter=Q(response_status__gte=200, response_status__lt=300))
    )
    total, ok = int(stats["total"]), int(stats["ok"])
    live = breaker.snapshot(endpoint)
    return EndpointHealth(
        endpoint_id=endpoint.uid,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        disabled_at=endpoint.disabled_at,
        circuit_state=live.state if live else endpoint.circuit_state,
        circuit_changed_at=(live.changed_at if live else None) or endpoint.circuit_changed_at,
        circuit_retry_at=live.retry_at if live else None,
        circuit_cooldown_seconds=live.cooldown_seconds if live else None,
        consecutive_failures=endpoint.consecutive_failures,
        failing_since=endpoint.failing_since,
        last_success_at=endpoint.last_success_at,
        last_failure_at=endpoint.last_failure_at,
        attempts_24h=total,
        succeeded_24h=ok,
        failed_24h=total - ok,
        success_rate_24h=round(ok / total, 4) if total else None,
    )
