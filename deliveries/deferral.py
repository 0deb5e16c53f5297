"""Hand-back and deferral: deliveries put back without an attempt (released,
deferred, or ended as skipped), claimed or still under a dispatch lease.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import NamedTuple

from django.db.models import Case, DateTimeField, Value, When
from django.utils import timezone

from deliveries import admission, leases, signals
from deliveries.models import Delivery
from webhooks.models import Endpoint

logger = logging.getLogger(__name__)


class Deferred(NamedTuple):
    """One deferred delivery, as logged and signalled."""

    endpoint_uid: str
    tenant_id: int
    delivery_uid: str


def hand_back(
    deliveries: list[Delivery], lease: str, wait: float | None, *, reason: str = admission.RATE_LIMITED
) -> dict[int, str]:
    """Release (``wait`` None) or defer for ``reason`` the deliveries a batch did not send.

    A failure here is logged only: the deliveries keep our lease until it
    expires, and then the scheduler hands them out again, no attempt spent.
    """
    if not deliveries:
        return {}
    try:
        if wait is None:
            return leases.release(deliveries, lease)
        return defer_all(deliveries, lease, seconds=wait, reason=reason)
    except Exception:
        logger.exception(
            "could not hand back %d deliveries; they wait for their lease to expire", len(deliveries)
        )
        return {d.pk: "lease_kept" for d in deliveries}


def defer_all(deliveries: list[Delivery], lease: str, *, seconds: float, reason: str) -> dict[int, str]:
    """Put the deliveries back for ``seconds`` without an attempt; "deferred" each, or "lease_lost".

    Status and attempt count stay as they are; only ``next_attempt_at`` moves
    and the lease is released, so the scheduler hands them out again when due
    and no worker waits for them meanwhile.
    """
    now = timezone.now()
    moved = leases.update_held(
        deliveries,
        lease,
        next_attempt_at=now + timedelta(seconds=seconds),
        lease_token=None,
        lease_expires_at=None,
    )
    announce_deferred(deferred_among(deliveries, moved), seconds=seconds, reason=reason)
    return {d.pk: ("deferred" if d.pk in moved else "lease_lost") for d in deliveries}


def finish_all(deliveries: list[Delivery], lease: str, *, status: str, error: str) -> dict[int, str]:
    """End the deliveries without an attempt (``status``: skipped), where we still hold the lease."""
    moved = leases.update_held(
        deliveries,
        lease,
        status=status,
        last_error=error,
        next_attempt_at=None,
        lease_token=None,
        lease_expires_at=None,
    )
    return {d.pk: (status if d.pk in moved else "lease_lost") for d in deliveries}


def deliveries_defer_unclaimed(
    *,
    batches: Sequence[tuple[str, Sequence[int]]],
    token: str | None,
    waits: Mapping[str, float],
    reason: str,
) -> set[int]:
    """Defer, without claiming them, the deliveries of ``batches`` (endpoint uid, ids) still
    due under the dispatch lease ``token`` (None: still unleased), each by its endpoint's
    ``waits`` seconds, in one statement; the ids deferred.

    For the hand-off, when admission would refuse the whole batch anyway (the
    endpoint's circuit is open, ``deliveries.tasks.enqueue``): no row loaded,
    no attempt spent, the lease released, so the scheduler hands them out
    again when the wait ends. Rows someone else holds, and rows of a disabled
    endpoint (a worker marks those skipped), are left alone.
    """
    now = timezone.now()
    ids = [pk for _, group in batches for pk in group]
    if not ids:
        return set()
    until = {uid: now + timedelta(seconds=waits[uid]) for uid, _ in batches}
    due_at = Case(
        *[When(pk__in=list(group), then=Value(until[uid])) for uid, group in batches],
        output_field=DateTimeField(),
    )
    enabled = Endpoint.objects.filter(uid__in=list(until), enabled=True).values("pk")
    rows = leases.due_among(ids, now).filter(lease_token=token, endpoint_id__in=enabled)
    moved = leases.update_returning(
        rows, ("pk", "tenant_id", "uid"), next_attempt_at=due_at, lease_token=None, lease_expires_at=None
    )
    tenant_and_uid = {pk: (tenant_id, uid) for pk, tenant_id, uid in moved}
    for endpoint_uid, group in batches:
        deferred = [Deferred(endpoint_uid, *tenant_and_uid[pk]) for pk in group if pk in tenant_and_uid]
        if deferred:
            announce_deferred(deferred, seconds=waits[endpoint_uid], reason=reason)
    return set(tenant_and_uid)


def deliveries_release_unclaimed(*, delivery_ids: Sequence[int], token: str) -> int:
    """Give back the dispatch lease ``token`` on those of ``delivery_ids`` still under it,
    unclaimed: they stay due, and the scheduler hands them out when a queue has room.
    How many were released."""
    return Delivery.objects.filter(pk__in=list(delivery_ids), lease_token=token).update(
        lease_token=None, lease_expires_at=None, updated_at=timezone.now()
    )


def deferred_among(deliveries: list[Delivery], moved: set[int]) -> list[Deferred]:
    """Each of ``deliveries`` whose id is in ``moved``, as a ``Deferred``."""
    return [Deferred(d.endpoint.uid, d.tenant_id, d.uid) for d in deliveries if d.pk in moved]


def announce_deferred(deferred: list[Deferred], *, seconds: float, reason: str) -> None:
    """Log and signal (``delivery_deferred``) each deferred delivery."""
    for endpoint_uid, tenant_id, delivery_uid in deferred:
        logger.debug(
            "deferred %s for %.2f s (%s)",
            delivery_uid,
            seconds,
            reason,
            extra={"delivery": delivery_uid, "endpoint": endpoint_uid, "tenant": tenant_id},
        )
        signals.delivery_deferred.send(
            sender=Delivery,
            endpoint_uid=endpoint_uid,
            tenant_id=tenant_id,
            delivery_uid=delivery_uid,
            reason=reason,
            seconds=seconds,
        )
