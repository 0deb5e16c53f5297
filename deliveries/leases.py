"""Claims and leases: who holds a delivery, and for how long.

Every write after a claim is conditioned on the lease token the claim set; a
zero row count means someone else holds the delivery now.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from deliveries.models import Delivery
from webhooks.models import Endpoint

DUE_STATUSES = (Delivery.Status.PENDING, Delivery.Status.FAILED)

# What an attempt reads of a delivery and its message (the rest of the row, five
# timestamps among it, was parsed into every claimed instance and never read). A
# field left out here costs a query per delivery when read: tests/unit/test_batches.py
# counts a batch's statements.
_CLAIM_FIELDS = (
    "uid",
    "tenant_id",
    "endpoint_id",
    "event_type_id",
    "status",
    "attempt_count",
    "schedule_offset",
    "internal_failures",
    "next_trigger",
    "message__uid",
    "message__payload",
    "message__created_at",
)


def new_token() -> str:
    return uuid.uuid4().hex


def deliveries_claim(*, delivery_ids: Sequence[int], token: str | None) -> tuple[list[Delivery], str]:
    """Take one lease on every due delivery among ``delivery_ids``; (claimed, lease token).

    ``token`` is the dispatch lease the task was queued with; without one (a
    task from an older queue entry) only unleased or expired deliveries are
    claimed. Deliveries that are not due, or that someone else holds, are left
    out. The claimed ones come back oldest first, with endpoint, message and
    event type loaded, all under one new lease token.

    Two statements for one delivery, four for a batch whatever its size (claim,
    load, and the batch's endpoints and event types), plus one per endpoint
    whose timeout is not the default, to fit its leases to what its
    attempts may take (so a worker killed mid-request is replaced after that,
    not after the maximum timeout).
    """
    now = timezone.now()
    due = due_among(delivery_ids, now)
    if token:
        due = due.filter(lease_token=token)
    else:
        due = due.filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
    claim_token = new_token()
    # Most endpoints keep the default timeout: claim with its lease, and
    # correct it below only for those that don't (before anything is sent).
    usual = lease_seconds(_default_timeout(), batch=len(delivery_ids) > 1)
    if not due.update(lease_token=claim_token, lease_expires_at=now + timedelta(seconds=usual)):
        return [], claim_token
    loaded = Delivery.objects.select_related("message").only(*_CLAIM_FIELDS)
    if len(delivery_ids) > 1:
        # A batch shares its endpoint and event type: load each once and share
        # the instance, rather than build one copy of each per row.
        loaded = loaded.prefetch_related("endpoint", "event_type")
    else:
        loaded = loaded.select_related("endpoint", "event_type")
    claimed = list(loaded.filter(pk__in=list(delivery_ids), lease_token=claim_token).order_by("pk"))
    for endpoint, group in by_endpoint(claimed):
        # A task's one-delivery group keeps the batch lease (a few seconds longer than it
        # needs): correcting it would cost a statement per endpoint of a packed task.
        seconds = lease_seconds(timeout_of(endpoint), batch=len(delivery_ids) > 1)
        if seconds != usual:
            Delivery.objects.filter(pk__in=[d.pk for d in group], lease_token=claim_token).update(
                lease_expires_at=now + timedelta(seconds=seconds)
            )
    return claimed, claim_token


def due_among(delivery_ids: Sequence[int], now: datetime) -> QuerySet[Delivery]:
    """Those of ``delivery_ids`` that are due at ``now`` (whoever holds them)."""
    return Delivery.objects.filter(
        pk__in=list(delivery_ids), status__in=DUE_STATUSES, next_attempt_at__lte=now
    )


def lease_seconds(timeout: int, *, batch: bool) -> float:
    """How long a claim holds: one attempt's timeout and the margin, plus the send budget for a batch."""
    budget = settings.HOOKPOST_BATCH_SEND_BUDGET_SECONDS if batch else 0
    return timeout + settings.HOOKPOST_LEASE_MARGIN_SECONDS + budget


def by_endpoint(deliveries: list[Delivery]) -> list[tuple[Endpoint, list[Delivery]]]:
    """``deliveries`` grouped by endpoint, order kept: (endpoint, its deliveries) each."""
    groups: dict[int, list[Delivery]] = {}
    for delivery in deliveries:
        groups.setdefault(delivery.endpoint_id, []).append(delivery)
    return [(group[0].endpoint, group) for group in groups.values()]


def _default_timeout() -> int:
    return min(settings.HOOKPOST_DEFAULT_TIMEOUT_SECONDS, settings.HOOKPOST_MAX_TIMEOUT_SECONDS)


def timeout_of(endpoint: Endpoint) -> int:
    """The whole-request timeout of one attempt to ``endpoint``, in seconds."""
    timeout = endpoint.timeout_seconds or settings.HOOKPOST_DEFAULT_TIMEOUT_SECONDS
    return min(timeout, settings.HOOKPOST_MAX_TIMEOUT_SECONDS)


def release(deliveries: list[Delivery], lease: str) -> dict[int, str]:
    """Hand claimed deliveries back untouched (no attempt spent): due as before, unleased.

    The scheduler's next tick picks them up again; what happens to them then
    is the breaker's and the rate limit's call.
    """
    if deliveries:
        held_rows(deliveries, lease).update(lease_token=None, lease_expires_at=None)
    return {d.pk: "released" for d in deliveries}


def held_rows(deliveries: list[Delivery], lease: str) -> QuerySet[Delivery]:
    """The rows of those of ``deliveries`` still under ``lease``."""
    return Delivery.objects.filter(pk__in=[d.pk for d in deliveries], lease_token=lease)


def update_held(deliveries: list[Delivery], lease: str, **changes: Any) -> set[int]:
    """Apply ``changes`` (and ``updated_at``) to those of ``deliveries`` we still hold; the ids updated."""
    return {pk for (pk,) in update_returning(held_rows(deliveries, lease), ("pk",), **changes)}


def update_returning(
    rows: QuerySet[Delivery], fields: tuple[str, ...], **changes: Any
) -> list[tuple[Any, ...]]:
    """Lock ``rows`` and apply ``changes`` (and ``updated_at``); ``fields`` of each row updated."""
    with transaction.atomic():
        updated = list(rows.select_for_update().values_list(*fields))
        rows.update(**changes, updated_at=timezone.now())
    return updated
