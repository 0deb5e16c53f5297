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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis
from django.db import transaction
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)

# What an unreachable or stalled broker raises (kombu wraps the Redis client's errors
# when connecting; a publish on an open connection may raise them as they are).
_BROKER_ERRORS = (OperationalError, redis.RedisError, OSError)


@dataclass(frozen=True)
class Route:
    """Where one fresh delivery goes, as ingest decided when it wrote the row."""

    endpoint_uid: str
    first_attempt: bool  # the first-attempt queue, else the retry queue


class Enqueuer(Protocol):
    """Hands committed deliveries to workers. ``routes`` (by delivery id) come when the
    caller knows them (else None); the enqueuer reads back the rows of any id they miss."""

    def __call__(
        self, delivery_ids: list[int], token: str | None, routes: Mapping[int, Route] | None = None
    ) -> None: ...


# The delivery engine registers its enqueue function here when it loads
# (``deliveries.tasks``); until then due deliveries wait for the scheduler.
_enqueuer: Enqueuer | None = None


def register_enqueuer(enqueue: Enqueuer | None) -> None:
    global _enqueuer
    _enqueuer = enqueue


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
        transaction.on_commit(lambda: _enqueue(ids, token, routes))


def enqueue_now(delivery_ids: Sequence[int], token: str) -> None:
    """Hand these deliveries to workers now: their ``token`` lease is already committed."""
    _enqueue(list(delivery_ids), token, None)


def _enqueue(ids: list[int], token: str | None, routes: Mapping[int, Route] | None) -> None:
    if _enqueuer is None:
        logger.debug("no delivery engine registered; %d deliveries left to the scheduler", len(ids))
        return
    try:
        _enqueuer(ids, token, routes)
    except _BROKER_ERRORS as exc:  # the broker being down must not fail an accepted request
        # One line, no traceback: during an outage every publish lands here.
        logger.warning(
            "broker unreachable (%s: %s); %d deliveries left to the scheduler",
            type(exc).__name__,
            exc,
            len(ids),
        )
    except Exception:
        logger.exception("enqueue failed; %d deliveries left to the scheduler", len(ids))
