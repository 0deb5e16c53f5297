"""Reads of the configuration domain."""

from __future__ import annotations

from collections.abc import Collection

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from webhooks.api_keys import hash_api_key
from webhooks.models import ApiKey, Endpoint, EndpointSecret, EventType, Tenant


def api_key_get_active(*, raw: str) -> ApiKey | None:
    """The unrevoked, unexpired key whose hash matches ``raw``, with its tenant."""
    return (
        ApiKey.objects.select_related("tenant")
        .filter(key_hash=hash_api_key(raw), revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .first()
    )


def tenant_list() -> QuerySet[Tenant]:
    return Tenant.objects.all()


def event_type_list(*, include_archived: bool = True) -> QuerySet[EventType]:
    qs = EventType.objects.all()
    return qs if include_archived else qs.filter(archived=False)


def endpoint_list(*, tenant: Tenant) -> QuerySet[Endpoint]:
    return Endpoint.objects.filter(tenant=tenant).prefetch_related("event_types")


def endpoint_get(*, tenant: Tenant, uid: str) -> Endpoint | None:
    """The tenant's endpoint ``uid``; None for unknown or another tenant's ids."""
    return endpoint_list(tenant=tenant).filter(uid=uid).first()


def endpoint_max_in_flight(*, endpoint: Endpoint) -> int:
    """The endpoint's cap on requests in flight across all workers: its own
    ``max_in_flight``, else ``HOOKPOST_ENDPOINT_MAX_IN_FLIGHT`` (0 = no cap)."""
    if endpoint.max_in_flight is not None:
        return endpoint.max_in_flight
    return int(settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT)


def endpoint_current_secret(*, endpoint: Endpoint) -> str:
    return EndpointSecret.objects.get(endpoint=endpoint, expires_at__isnull=True).secret


def endpoint_signing_secrets(*, endpoint: Endpoint) -> list[str]:
    """Every secret that signs now: the current one first, then unexpired old ones."""
    return endpoints_signing_secrets(endpoint_ids=[endpoint.pk]).get(endpoint.pk, [])


def endpoints_signing_secrets(*, endpoint_ids: Collection[int]) -> dict[int, list[str]]:
    """``endpoint_signing_secrets`` of each of ``endpoint_ids``, in one query (a worker's
    task may hold many endpoints' deliveries)."""
    now = timezone.now()
    rows = EndpointSecret.objects.filter(endpoint_id__in=list(endpoint_ids)).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    by_endpoint: dict[int, list[str]] = {}
    for row in sorted(rows, key=lambda r: (r.expires_at is not None, r.created_at)):
        by_endpoint.setdefault(row.endpoint_id, []).append(row.secret)
    return by_endpoint
