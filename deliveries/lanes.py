"""The lane rule: which queue a delivery's next attempt takes (``lane_of``).

One rule for ingest, the scheduler and the hand-off, so a broken or unproven
endpoint's work never queues ahead of healthy endpoints' first attempts.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db.models import Q

from config.celery import FIRST_QUEUE, RETRY_QUEUE

if TYPE_CHECKING:
    from webhooks.models import Endpoint


class Lane(enum.Enum):
    FIRST = "first"
    RETRY = "retry"

    @property
    def queue(self) -> str:
        """The Celery queue of this lane's tasks."""
        return FIRST_QUEUE if self is Lane.FIRST else RETRY_QUEUE


def lane_of(
    *, attempt_count: int, consecutive_failures: int, circuit_state: str, last_success_at: Any
) -> Lane:
    """The lane of a delivery: FIRST only for a first attempt to an endpoint that has
    answered 2xx before and is not failing now.

    Everything else takes the retry lane: retries, work for an endpoint that is
    failing (failures in a row, or a circuit not closed), and work for an
    endpoint that has never succeeded. The last matters most: a new endpoint
    that hangs is not known to fail until its first timeout, and meanwhile
    each of its fresh messages would hold a first-lane request in flight for
    that long, beside every healthy endpoint's messages (the engine also gives
    such an endpoint a cap of one, ``admission.cap_of``).
    """
    first = (
        attempt_count == 0
        and consecutive_failures == 0
        and circuit_state == "closed"
        and last_success_at is not None
    )
    return Lane.FIRST if first else Lane.RETRY


def lane_of_fresh(endpoint: Endpoint) -> Lane:
    """``lane_of`` a new delivery to ``endpoint``, from the endpoint as loaded (ingest)."""
    return lane_of(
        attempt_count=0,
        consecutive_failures=endpoint.consecutive_failures,
        circuit_state=endpoint.circuit_state,
        last_success_at=endpoint.last_success_at,
    )


# What lane_of() reads of a Delivery row, as ``values_list`` fields (``lane_of_row``).
LANE_FIELDS = (
    "attempt_count",
    "endpoint__consecutive_failures",
    "endpoint__circuit_state",
    "endpoint__last_success_at",
)


def lane_of_row(values: Sequence[Any]) -> Lane:
    """``lane_of`` a row's ``LANE_FIELDS`` values, in that order."""
    count, failures, circuit, succeeded = values
    return lane_of(
        attempt_count=count, consecutive_failures=failures, circuit_state=circuit, last_success_at=succeeded
    )


# lane_of() == Lane.FIRST as a filter on Delivery rows, for a round that fills one lane.
FIRST_LANE_ROWS = Q(
    attempt_count=0,
    endpoint__consecutive_failures=0,
    endpoint__circuit_state="closed",
    endpoint__last_success_at__isnull=False,
)
