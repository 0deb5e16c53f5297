"""The scheduler: PostgreSQL is the schedule, Redis only the hand-off.

Every tick claims due deliveries (``status`` pending/failed, ``next_attempt_at
<= now``, no live lease) with ``SELECT … FOR UPDATE SKIP LOCKED``, so several
schedulers never hand out the same row, puts a dispatch lease on them and
queues their ids after commit. A delivery whose lease expired (its worker was
killed, or Redis lost the queued task) is simply due again. First attempts to
endpoints that have succeeded before go to the first-attempt queue; later
attempts, and any work for an endpoint that is failing (failures in a row, or
a circuit not closed) or has never succeeded, to the retry queue
(``deliveries.lanes``).

Retry delays are never held as Celery countdowns/ETAs: those would sit in
worker memory and be redelivered past the broker's visibility timeout. The
queues in Redis are kept short (``HOOKPOST_QUEUE_TARGET_DEPTH`` each, topped up
one lane at a time by ``deliveries.tasks.dispatch_due``); a backlog of millions
waits in PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from config import metrics
from deliveries.deferral import deliveries_release_unclaimed
from deliveries.dispatch import BROKER_ERRORS
from deliveries.lanes import FIRST_LANE_ROWS, LANE_FIELDS, Lane, lane_of_row
from deliveries.leases import DUE_STATUSES, new_token
from deliveries.models import Delivery

logger = logging.getLogger(__name__)

# enqueue(ids, token, lane) -> None
Enqueue = Callable[[list[int], str, Lane], None]


@dataclass(frozen=True)
class DispatchReport:
    dispatched: int
    first_attempts: int
    retries: int


def due_deliveries(now: datetime | None = None) -> QuerySet[Delivery]:
    """Deliveries that are due and not held by a live lease, oldest due first."""
    now = now or timezone.now()
    return (
        Delivery.objects.filter(status__in=DUE_STATUSES, next_attempt_at__lte=now)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .order_by("next_attempt_at")
    )


def dispatch_due(*, enqueue: Enqueue, limit: int, lane: Lane | None = None) -> DispatchReport:
    """Claim up to ``limit`` due deliveries bound for ``lane`` (None: either) and queue
    them after commit.

    The tick fills one lane per round, each up to its own queue's depth, so the
    oldest due work of one lane never waits behind the other's (a broken
    tenant's retries filling the retry queue must not stop healthy first attempts).
    """
    if limit <= 0:
        return DispatchReport(0, 0, 0)
    now = timezone.now()
    token = new_token()
    due = due_deliveries(now)
    if lane is Lane.FIRST:
        due = due.filter(FIRST_LANE_ROWS)
    elif lane is Lane.RETRY:
        due = due.exclude(FIRST_LANE_ROWS)
    with transaction.atomic():
        rows = list(
            due.select_for_update(skip_locked=True, of=("self",)).values_list(
                "pk", *LANE_FIELDS, "next_attempt_at", "lease_expires_at"
            )[:limit]
        )
        if not rows:
            return DispatchReport(0, 0, 0)
        Delivery.objects.filter(pk__in=[row[0] for row in rows]).update(
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=settings.HOOKPOST_DISPATCH_LEASE_SECONDS),
        )
        # Work for an endpoint that is failing or unproven takes the retry lane
        # even on its first attempt (or after a deferral), so fresh messages for
        # healthy endpoints never queue behind it.
        first = [row[0] for row in rows if lane_of_row(row[1 : 1 + len(LANE_FIELDS)]) is Lane.FIRST]
        chosen = set(first)
        retries = [row[0] for row in rows if row[0] not in chosen]

        oldest_due = min(_free_since(due_at, lease_end) for *_, due_at, lease_end in rows)

        def hand_over() -> None:
            for ids, lane in ((first, Lane.FIRST), (retries, Lane.RETRY)):
                if ids:
                    _hand_over_lane(enqueue, ids, token, lane)
            metrics.SCHEDULER_LAG.observe(max((timezone.now() - oldest_due).total_seconds(), 0.0))

        transaction.on_commit(hand_over)
    return DispatchReport(len(rows), len(first), len(retries))


def _hand_over_lane(enqueue: Enqueue, ids: list[int], token: str, lane: Lane) -> None:
    """Queue one lane's dispatched ids; should the broker fail, give their dispatch lease
    back, so the next tick hands them out again rather than the lease's end.

    Tasks already queued for some of them find the lease gone and claim nothing.
    """
    try:
        enqueue(ids, token, lane)
    except BROKER_ERRORS as exc:
        logger.warning(
            "broker unreachable (%s: %s); %d %s deliveries back to the next tick",
            type(exc).__name__,
            exc,
            len(ids),
            lane.value,
        )
        deliveries_release_unclaimed(delivery_ids=ids, token=token)
        return
    metrics.DISPATCHED.labels(queue=lane.value).inc(len(ids))


def _free_since(due_at: datetime, lease_end: datetime | None) -> datetime:
    """When a due row became the scheduler's to hand out: when it fell due or, if
    later, when a lease on it ended (a batch that waited in an endpoint's line
    for a place keeps its due time under a short lease; a killed worker's lease).
    The scheduler's lag is counted from here, not from a due time others held.
    """
    return max(due_at, lease_end) if lease_end is not None else due_at
