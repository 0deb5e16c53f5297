"""The hand-off from ingest to the delivery engine.

Ingest creates deliveries as ``pending`` with ``next_attempt_at = now`` inside
its transaction, and knows each one's lane as it writes it (``Route``): the
first-attempt lane's work under a dispatch lease (token + expiry), the retry
lane's unleased (``deliveries.services._publish``). PostgreSQL is the
schedule: the scheduler finds every due delivery on its own, so nothing here
is needed for correctness: if the hand-off fails, the lease expires and the
scheduler queues the delivery. Enqueueing right after commit only saves the
scheduler's polling delay.

``enqueue_on_commit`` is the only safe way to hand work over: publishing
before commit could deliver a message the database then rolls back.

The Celery side (``deliveries.tasks``) is imported where it is called
(``_hand_over``), not at the top: tasks imports the engine, whose endpoint
line hands work back through here, and ingest must load neither.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis
from django.db import transaction
from kombu.exceptions import OperationalError

from deliveries.lanes import Lane

logger = logging.getLogger(__name__)

# What an unreachable or stalled broker raises (kombu wraps the Redis client's errors
# when connecting; a publish on an open connection may raise them as they are).
BROKER_ERRORS = (OperationalError, redis.RedisError, OSError)


@dataclass(frozen=True)
class Route:
    """Where one fresh delivery goes, as ingest decided when it wrote the row."""

    endpoint_uid: str
    lane: Lane


def enqueue_on_commit(
    delivery_ids: Sequence[int], token: str | None, routes: Mapping[int, Route] | None = None
) -> None:
    """After the current transaction commits, hand these deliveries to workers.

    ``token`` is the dispatch lease the deliveries were written with; the
    worker's claim must present it. None: they were written unleased, so the
    scheduler may hand them out too, and a worker claims only those still
    unleased (whoever takes a row first sends it, once). ``routes`` (by
    delivery id), when the caller knows them, spare the engine reading the
    rows back to route them.

    If the transaction rolls back nothing is sent. If the broker is down the
    deliveries stay due in PostgreSQL and the scheduler picks them up; the
    attempt costs at most the bounded Redis timeouts (``REDIS_*_TIMEOUT_SECONDS``).
    """
    ids = list(delivery_ids)
    if ids:
        transaction.on_commit(lambda: _hand_over(ids, token, routes))


def enqueue_now(delivery_ids: Sequence[int], token: str) -> None:
    """Hand these deliveries to workers now: their ``token`` lease is already committed."""
    _hand_over(list(delivery_ids), token, None)


def _hand_over(ids: list[int], token: str | None, routes: Mapping[int, Route] | None) -> None:
    """Queue the tasks (``tasks.enqueue_fresh``); errors are logged (a broker's in one line), never raised."""
    from deliveries import tasks  # here, not at the top: see the module docstring

    try:
        tasks.enqueue_fresh(ids, token, routes)
    except BROKER_ERRORS as exc:  # the broker being down must not fail an accepted request
        # One line, no traceback: during an outage every publish lands here.
        logger.warning(
            "broker unreachable (%s: %s); %d deliveries left to the scheduler",
            type(exc).__name__,
            exc,
            len(ids),
        )
    except Exception:
        logger.exception("enqueue failed; %d deliveries left to the scheduler", len(ids))
