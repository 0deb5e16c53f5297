"""Replay: send a delivery again, with the same ``webhook-id``.

A replay moves a delivery back to ``pending`` and appends attempts (trigger
``replay``); earlier attempts are never touched. The retry schedule starts
afresh from the replay, while attempt numbers keep counting.

- ``delivery_replay``   one delivery, queued at once;
- ``deliveries_replay`` a selection (admin action);
- ``endpoint_recover``  every failed/dead/skipped delivery of an endpoint in a
  time window. Bulk replays are made due in PostgreSQL and left to the
  scheduler, so recovering a million deliveries never floods the broker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from deliveries import dispatch
from deliveries.leases import new_token
from deliveries.models import Attempt, Delivery
from webhooks.errors import Conflict, Invalid
from webhooks.models import Endpoint, Tenant

REPLAYABLE = (
    Delivery.Status.SUCCEEDED,
    Delivery.Status.FAILED,
    Delivery.Status.DEAD,
    Delivery.Status.SKIPPED,
)
RECOVERABLE = (Delivery.Status.FAILED, Delivery.Status.DEAD, Delivery.Status.SKIPPED)


@dataclass(frozen=True)
class ReplayReport:
    replayed: int
    not_replayed: int  # in flight, pending, or endpoint disabled


def _replay_changes(now: datetime, lease_token: str | None) -> dict[str, object]:
    lease_until = now + timedelta(seconds=settings.HOOKPOST_DISPATCH_LEASE_SECONDS) if lease_token else None
    return {
        "status": Delivery.Status.PENDING,
        "next_attempt_at": now,
        "next_trigger": Attempt.Trigger.REPLAY,
        "schedule_offset": F("attempt_count"),
        "replay_count": F("replay_count") + 1,
        "internal_failures": 0,
        "finished_at": None,
        "lease_token": lease_token,
        "lease_expires_at": lease_until,
        "updated_at": now,
    }


def _replayable(
    qs: QuerySet[Delivery], now: datetime, statuses: Sequence[str] = REPLAYABLE
) -> QuerySet[Delivery]:
    """Rows that may be replayed now: finished or waiting for a retry, not in flight."""
    return qs.filter(status__in=statuses, endpoint__enabled=True).filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
    )


def delivery_replay(*, delivery: Delivery) -> Delivery:
    """Replay one delivery now; raises Conflict if it is pending/in flight or its endpoint is disabled."""
    if not delivery.endpoint.enabled:
        raise Conflict("The endpoint is disabled; enable it before replaying.")
    now = timezone.now()
    token = new_token()
    with transaction.atomic():
        moved = _replayable(Delivery.objects.filter(pk=delivery.pk), now).update(
            **_replay_changes(now, token)
        )
        if not moved:
            raise Conflict("The delivery is already pending or being attempted right now.")
        dispatch.enqueue_on_commit([delivery.pk], token)
    delivery.refresh_from_db()
    return delivery


def deliveries_replay(*, tenant: Tenant, deliveries: Iterable[Delivery]) -> ReplayReport:
    """Replay a selection of the tenant's deliveries; others' ids are ignored."""
    ids = [d.pk for d in deliveries]
    now = timezone.now()
    with transaction.atomic():
        moved = _replayable(Delivery.objects.filter(tenant=tenant, pk__in=ids), now).update(
            **_replay_changes(now, None)
        )
    return ReplayReport(replayed=moved, not_replayed=len(ids) - moved)


def endpoint_recover(
    *,
    endpoint: Endpoint,
    since: datetime,
    until: datetime | None = None,
    statuses: Sequence[str] | None = None,
) -> int:
    """Replay the endpoint's failed/dead/skipped deliveries created in [since, until).

    Returns how many were replayed. Raises Invalid for a bad window or status,
    Conflict when the endpoint is disabled.
    """
    chosen = list(statuses or RECOVERABLE)
    errors: dict[str, list[str]] = {}
    bad = sorted(set(chosen) - set(RECOVERABLE))
    if bad:
        errors["statuses"] = [f"Only {', '.join(RECOVERABLE)} can be recovered, not {', '.join(bad)}."]
    now = timezone.now()
    end = until or now
    if end <= since:
        errors["until"] = ["Must be later than since."]
    if errors:
        raise Invalid("The recovery window is invalid.", errors)
    if not endpoint.enabled:
        raise Conflict("The endpoint is disabled; enable it before recovering its deliveries.")
    with transaction.atomic():
        window = Delivery.objects.filter(endpoint=endpoint, created_at__gte=since, created_at__lt=end)
        return _replayable(window, now, chosen).update(**_replay_changes(now, None))
