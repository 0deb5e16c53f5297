"""Celery tasks: thin interfaces that take ids and call the engine or scheduler.

``deliver`` is idempotent: a duplicate or stale task fails its claim and
returns quietly, so at-least-once queue delivery never means double sending
by us (receivers still dedupe by ``webhook-id`` around crashes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from celery import Task, shared_task
from django.conf import settings

from config.celery import FIRST_QUEUE, RETRY_QUEUE, app
from deliveries import admission, deferral, dispatch, engine, retention, scheduler
from deliveries.lanes import LANE_FIELDS, Lane, lane_of_row
from deliveries.models import Delivery

logger = logging.getLogger(__name__)

# Ids per lookup query: a batch of 1,000 messages to 100 endpoints is 100,000
# deliveries, beyond what one statement may bind.
_LOOKUP_CHUNK = 10_000


@shared_task(name="hookpost.deliver_batch", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_batch(
    delivery_ids: list[int], token: str | None = None, endpoint_uid: str | None = None, **_: object
) -> None:
    """Deliver up to ``HOOKPOST_DELIVERY_BATCH_SIZE`` deliveries to one endpoint (``endpoint_uid``;
    None in tasks queued before it was sent). Returns once the sends are under way; the
    worker's send loop records them. Keyword arguments a newer version adds are
    ignored, so tasks queued by it during a rolling upgrade still run here."""
    engine.delivery_start_batch(delivery_ids=delivery_ids, token=token, endpoint_uid=endpoint_uid)


@shared_task(name="hookpost.deliver", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver(delivery_id: int, token: str | None = None) -> None:
    """One delivery (tasks queued before batches existed; ``enqueue`` sends ``deliver_batch``)."""
    engine.delivery_run(delivery_id=delivery_id, token=token)


@shared_task(name="hookpost.dispatch_due", ignore_result=True)
def dispatch_due() -> None:
    """Scheduler tick: top the delivery queues up from PostgreSQL.

    Each queue (first attempts, retries) is topped up to
    ``HOOKPOST_QUEUE_TARGET_DEPTH`` queued tasks, each a batch of up to
    ``HOOKPOST_DELIVERY_BATCH_SIZE`` deliveries. The tick hands out rounds of
    one lane's due deliveries while its queue has room, first attempts first,
    and never more than a full queue's worth of deliveries per lane in one
    tick (a broker that cannot report its depth counts as empty).
    """
    target = settings.HOOKPOST_QUEUE_TARGET_DEPTH
    size = settings.HOOKPOST_DELIVERY_BATCH_SIZE
    total = 0
    for lane in Lane:
        # One lane per round, so a lane's rows never wait behind the other's older ones.
        queue = lane.queue
        budget, handed = target * size, 0
        while handed < budget:
            free = target - queue_depths((queue,))[queue]
            if free <= 0:
                break
            # Each free task may carry a batch; the queue is measured again after every
            # round, so work spread over many endpoints (small batches) stops at the target.
            want = min(settings.HOOKPOST_SCHEDULER_BATCH, free * size, budget - handed)
            report = scheduler.dispatch_due(enqueue=enqueue, limit=want, lane=lane)
            handed += report.dispatched
            if report.dispatched < want:
                break
        total += handed
    if total:
        logger.info("dispatched %d due deliveries", total)


@shared_task(name="hookpost.purge_expired", ignore_result=True)
def purge_expired() -> None:
    """Retention: delete history older than each tenant's retention days."""
    retention.purge_expired()


@shared_task(name="hookpost.notify_operator", bind=True, ignore_result=True, max_retries=4)
def notify_operator(self: Task[[int], None], event_id: int) -> None:
    """POST one operational event to the operator webhook.

    A few short retries; after them the event stays unsent (``notified_at`` null) on its row.
    """
    from deliveries import operational

    if not operational.event_notify(event_id=event_id):
        raise self.retry(countdown=10 * 2**self.request.retries)


def enqueue(
    delivery_ids: list[int], token: str | None, lane: Lane, endpoints: dict[int, str] | None = None
) -> None:
    """Queue ``deliver_batch`` tasks; called after the lease-setting transaction commits
    (``token`` None: the deliveries are unleased, and the workers claim those still so).

    Deliveries are grouped by endpoint (``endpoints`` maps delivery id to
    endpoint uid; read from the database when not given) and cut into tasks
    of ``HOOKPOST_DELIVERY_BATCH_SIZE`` (``batches``), each endpoint's oldest first. A task
    of one endpoint names it, so a worker can see the endpoint is full before
    claiming anything.

    Retry-lane work for an endpoint whose circuit is open is not queued: it
    is deferred to the end of the cool-down in the database
    (``admission.held_by_open_circuits``), as a worker would only claim it to
    defer it.
    """
    if endpoints is None:
        endpoints = dict(Delivery.objects.filter(pk__in=delivery_ids).values_list("pk", "endpoint__uid"))
    if lane is Lane.RETRY:
        named = {endpoints[pk] for pk in delivery_ids if pk in endpoints}
        held = admission.held_by_open_circuits(named)
        if held:
            delivery_ids = _not_deferred(delivery_ids, endpoints, token, held)
    cut = batches(delivery_ids, endpoints, settings.HOOKPOST_DELIVERY_BATCH_SIZE)
    queue = lane.queue
    with app.producer_or_acquire() as producer:
        for endpoint_uid, batch in cut:
            deliver_batch.apply_async(
                args=(batch, token), kwargs={"endpoint_uid": endpoint_uid}, queue=queue, producer=producer
            )


def _not_deferred(
    delivery_ids: list[int], endpoints: dict[int, str], token: str | None, waits: dict[str, float]
) -> list[int]:
    """Defer, in one statement, the deliveries whose endpoint's circuit is open (``waits``);
    those of ``delivery_ids`` to queue after all: all but those of the endpoints whose
    deliveries were deferred (a disabled endpoint's are not, and the worker marks them
    skipped at once; the rest of a deferred endpoint's, someone else holds), or all of
    them if the deferral failed (the worker's admission defers them the usual way)."""
    held: dict[str, list[int]] = {}
    for pk in delivery_ids:
        if endpoints.get(pk) in waits:
            held.setdefault(endpoints[pk], []).append(pk)
    try:
        moved = deferral.deliveries_defer_unclaimed(
            batches=list(held.items()), token=token, waits=waits, reason=admission.CIRCUIT_OPEN
        )
    except Exception:
        logger.exception("could not defer the deliveries of %d open circuits; queuing them", len(held))
        return delivery_ids
    deferred = {uid for uid, ids in held.items() if not moved.isdisjoint(ids)}
    return [pk for pk in delivery_ids if endpoints.get(pk) not in deferred]


def batches(
    delivery_ids: list[int], endpoints: dict[int, str], size: int
) -> list[tuple[str | None, list[int]]]:
    """``delivery_ids`` cut into tasks of at most ``size``, order kept within each endpoint;
    each with its endpoint, or None for a task that holds several (or ids ``endpoints``
    does not know).

    An endpoint's deliveries are cut into tasks of their own while ``size`` of them are
    left; what remains of each endpoint is packed with other endpoints' remains. A task
    costs a claim (two statements whatever its size) and a broker round trip, so a
    thousand endpoints with one delivery each make ten tasks, not a thousand. Packing
    delays nobody: a task's endpoints are admitted one by one and each endpoint's sends
    and record run apart on the send loop (``engine.delivery_start_batch``).
    """
    groups: dict[str | None, list[int]] = {}
    for pk in delivery_ids:
        groups.setdefault(endpoints.get(pk), []).append(pk)
    size = max(1, size)
    cut: list[tuple[str | None, list[int]]] = []
    packed: list[tuple[set[str | None], list[int]]] = []
    for endpoint, group in groups.items():
        whole = len(group) - len(group) % size
        cut += [(endpoint, group[i : i + size]) for i in range(0, whole, size)]
        rest = group[whole:]
        if not rest:
            continue
        if not packed or len(packed[-1][1]) + len(rest) > size:
            packed.append((set(), []))
        packed[-1][0].add(endpoint)
        packed[-1][1].extend(rest)
    return cut + [(next(iter(names)) if len(names) == 1 else None, ids) for names, ids in packed]


def queue_depths(names: tuple[str, ...] = (FIRST_QUEUE, RETRY_QUEUE)) -> dict[str, int]:
    """Tasks waiting in each of the delivery queues ``names`` (0 for a queue the broker
    cannot report, and for all of them when it is unreachable); one look at the broker
    per queue asked about."""
    try:
        return _read_queue_depths(names)
    except Exception:  # a broker hiccup: assume empty
        logger.debug("could not read queue depth", exc_info=True)
        return dict.fromkeys(names, 0)


# The retry queue's depth as last read by this process: (depth, monotonic time read).
_retry_depth: tuple[int, float] = (0, float("-inf"))
_RETRY_DEPTH_MAX_AGE_SECONDS = 0.5


def _retry_queue_depth() -> int:
    """The retry queue's depth, read from the broker at most every half second per process.

    Every hand-off of retry-lane work asks (ingest, and each batch a freed place
    sends on from an endpoint's line); a broken tenant's worker asked hundreds of
    times a second, a tenth of its CPU. The target it is checked against is a
    soft bound, so a depth half a second old does. Raises when the broker is
    unreachable.
    """
    global _retry_depth
    depth, read_at = _retry_depth
    now = time.monotonic()
    if now - read_at > _RETRY_DEPTH_MAX_AGE_SECONDS:
        depth = _read_queue_depths((RETRY_QUEUE,))[RETRY_QUEUE]
        _retry_depth = (depth, now)
    return depth


def _read_queue_depths(names: tuple[str, ...]) -> dict[str, int]:
    """``queue_depths``, raising the broker's error when it cannot be reached."""
    depths = dict.fromkeys(names, 0)
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        for name in depths:
            try:
                depths[name] = channel.queue_declare(queue=name, passive=True).message_count  # type: ignore[attr-defined]  # not declared on kombu's StdChannel
            except conn.channel_errors:  # an empty queue does not exist in Redis: 0 waiting
                continue
    return depths


def enqueue_fresh(
    delivery_ids: list[int], token: str | None, routes: Mapping[int, dispatch.Route] | None = None
) -> None:
    """Queue freshly accepted deliveries: first attempts, except that work for an
    endpoint failing or never yet successful takes the retry lane, as the
    scheduler does (``lanes.lane_of``), so a broken tenant's fan-out
    never queues ahead of healthy endpoints' messages. Retry-lane work finding
    the retry queue at its target depth is left to the scheduler (its lease
    given back, if it has one: ingest writes such work unleased).

    ``routes`` (by delivery id) are the lanes ingest chose as it wrote the
    rows; without them (replays, test events, an endpoint's line), or for an
    id they miss, the rows are read back to route them.

    Raises the broker's error when it is unreachable (``deliveries.dispatch``
    logs it and leaves the deliveries to the scheduler).
    """
    endpoints: dict[int, str] = {}
    failing: set[int] = set()
    unrouted = delivery_ids if routes is None else [pk for pk in delivery_ids if pk not in routes]
    for pk, route in (routes or {}).items():
        endpoints[pk] = route.endpoint_uid
        if route.lane is Lane.RETRY:
            failing.add(pk)
    for start in range(0, len(unrouted), _LOOKUP_CHUNK):
        rows = Delivery.objects.filter(pk__in=unrouted[start : start + _LOOKUP_CHUNK]).values_list(
            "pk", "endpoint__uid", *LANE_FIELDS
        )
        for pk, endpoint_uid, *lane_fields in rows:
            endpoints[pk] = endpoint_uid
            if lane_of_row(lane_fields) is Lane.RETRY:
                failing.add(pk)
    healthy = [pk for pk in delivery_ids if pk not in failing]
    if healthy:
        enqueue(healthy, token, Lane.FIRST, endpoints)
    if not failing:
        return
    retry = [pk for pk in delivery_ids if pk in failing]
    # Raises when the broker is unreachable: the hand-off gives up after one timeout.
    if _retry_queue_depth() >= settings.HOOKPOST_QUEUE_TARGET_DEPTH:
        # The retry queue is at its target (a broken tenant's fan-out can fill it faster than
        # hanging receivers let it drain): give the dispatch lease back instead, and the
        # scheduler hands them out as the queue has room, so the queue stays short.
        if token is not None:
            deferral.deliveries_release_unclaimed(delivery_ids=retry, token=token)
        return
    enqueue(retry, token, Lane.RETRY, endpoints)
