"""The delivery engine: one batch of one endpoint, from claim to record.

    claim (deliveries.leases: conditional update on status + lease token)
      -> admission (deliveries.admission: circuit breaker, bulkheads, rate
         limit); refused -> deferred (deliveries.deferral) or queued in the
         endpoint's line (deliveries.line): no attempt spent, no worker held
      -> the sends, on the process's send loop (deliveries.send_loop): up to
         the places the batch holds at once, each body built once and those
         exact bytes signed (deliveries.outbound), POSTed by the transport
         (deliveries.transport), its result classified (deliveries.retry)
      -> finish: count the results in the breaker, free the places, record the
         Attempts and move the deliveries, in one transaction, only where we
         still hold the lease (deliveries.recording); hand back what was not sent.

A Celery task starts a batch (``delivery_start_batch``) and returns once its
sends are under way: the finish runs on a recorder thread (``send_loop``), so
no pool thread or database connection waits on a receiver.
``delivery_run_batch`` does the same and waits for the outcome.

Two workers can never both finish one delivery: every write after the claim
is conditioned on the lease token the claim set, and a zero row count means
someone else owns it now.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections
from django.utils import timezone

from deliveries import (
    admission,
    breaker,
    bulkhead,
    deferral,
    leases,
    line,
    outbound,
    recording,
    retry,
    send_loop,
)
from deliveries.models import Delivery
from deliveries.recording import Sent
from deliveries.transport import TransportResult
from webhooks.models import Endpoint
from webhooks.selectors import endpoint_signing_secrets, endpoints_signing_secrets

logger = logging.getLogger(__name__)


@dataclass
class Batch:
    """One endpoint's claimed and admitted deliveries, and what became of them on the send loop.

    ``sent`` are the attempts that went out; ``failed`` the deliveries our own
    code failed on (charged as internal failures); ``rest`` the ones not sent
    (handed back after recording: released, or deferred ``rest_wait`` seconds
    for ``rest_reason``). The first ``settled`` of ``results`` are counted in
    the breaker already.
    """

    endpoint: Endpoint
    deliveries: list[Delivery]
    lease: str
    ticket: admission.Ticket
    secrets: list[str]
    sent: list[Sent] = field(default_factory=list)
    results: list[TransportResult] = field(default_factory=list)
    failed: list[tuple[Delivery, Exception]] = field(default_factory=list)
    rest: list[Delivery] = field(default_factory=list)
    rest_wait: float | None = None
    rest_reason: str = admission.RATE_LIMITED
    settled: int = 0
    stopped: bool = False  # an attempt failed: start no more (but see ``_carry_on``)
    # ``admission.slow_start`` when claimed: one place, and a failure does not stop the
    # batch while the circuit stays closed (``_carry_on``).
    slow_start: bool = False


def delivery_run(*, delivery_id: int, token: str | None) -> str | None:
    """Claim and attempt one delivery; return the resulting status, or None if not claimed."""
    return delivery_run_batch(delivery_ids=[delivery_id], token=token).get(delivery_id)


def delivery_run_batch(
    *, delivery_ids: Sequence[int], token: str | None, endpoint_uid: str | None = None
) -> dict[int, str]:
    """``delivery_start_batch``, waiting for the outcome: the resulting status of each
    claimed delivery (deliveries not claimed, not due or leased to someone else, are absent).
    The finish runs in the calling thread."""
    statuses, batches = _begin(delivery_ids, token, endpoint_uid)
    for batch in batches:
        statuses.update(finish(send_loop.run(send_all(batch))))
    return statuses


def delivery_start_batch(
    *, delivery_ids: Sequence[int], token: str | None, endpoint_uid: str | None = None
) -> None:
    """Claim a batch of deliveries and start their sends on the send loop; return at once.

    Waits first, before claiming anything, while this process has its
    ``HOOKPOST_WORKER_MAX_IN_FLIGHT`` requests in flight. A task may hold
    several endpoints' deliveries (``deliveries.tasks.batches``): each
    endpoint's group is admitted and sent as a batch of its own, so a slow
    receiver only ever delays its own deliveries.
    """
    send_loop.wait_for_room()
    _, batches = _begin(delivery_ids, token, endpoint_uid)
    for batch in batches:
        send_loop.start_batch(send_all(batch), reserve=batch.ticket.places, finish=finish)


def _begin(
    delivery_ids: Sequence[int], token: str | None, endpoint_uid: str | None
) -> tuple[dict[int, str], list[Batch]]:
    """Claim, and admit each endpoint's group: (statuses of those settled without a send,
    the batches to send).

    ``endpoint_uid``, the endpoint of every delivery in the batch, comes with
    the tasks the dispatcher queues. With it, a batch for an endpoint whose
    places are all taken joins the endpoint's line unclaimed
    (``line.wait_in_line_unclaimed``): a claim loads every delivery with its
    message, all thrown away when admission then refuses the batch.

    Exceptions in our own code are counted against the delivery they hit
    (``internal_failures``); after ``HOOKPOST_MAX_INTERNAL_FAILURES`` it is
    dead-lettered with the reason, so poison work cannot crash-loop a worker.
    """
    if endpoint_uid and token:
        wait = bulkhead.place_wait(endpoint_uid=endpoint_uid)
        if wait is not None:
            return line.wait_in_line_unclaimed(endpoint_uid, delivery_ids, token, seconds=wait), []
    claimed, lease = leases.deliveries_claim(delivery_ids=delivery_ids, token=token)
    statuses: dict[int, str] = {}
    batches: list[Batch] = []
    groups = leases.by_endpoint(claimed)
    secrets = _signing_secrets([endpoint.pk for endpoint, _ in groups])
    for endpoint, group in groups:
        try:
            admitted = _admit(endpoint, group, lease, secrets.get(endpoint.pk))
        except Exception as exc:  # admission broke: charge every delivery of the group
            statuses.update(_charge_all(endpoint, group, lease, exc))
            continue
        if isinstance(admitted, Batch):
            batches.append(admitted)
        else:
            statuses.update(admitted)
    return statuses, batches


def _signing_secrets(endpoint_ids: list[int]) -> dict[int, list[str]]:
    """The claimed endpoints' signing secrets, in one query; on trouble none, and each
    admitted endpoint's are read on their own (``_admit``), where a failure is charged."""
    if len(endpoint_ids) < 2:
        return {}
    try:
        return endpoints_signing_secrets(endpoint_ids=endpoint_ids)
    except Exception:
        logger.exception("could not load the signing secrets of %d endpoints at once", len(endpoint_ids))
        return {}


def _admit(
    endpoint: Endpoint, deliveries: list[Delivery], lease: str, secrets: list[str] | None = None
) -> Batch | dict[int, str]:
    """Admit one endpoint's claimed deliveries as a batch, or settle them without a send.

    One admission covers the batch: the breaker is asked once, and the batch
    takes as many of the endpoint's places as it has deliveries, up to those
    free under its cap (``admission.cap_of``: one for an endpoint not yet
    proven); that many of its requests are in flight at once.
    """
    if not endpoint.enabled:
        return deferral.finish_all(
            deliveries,
            lease,
            status=Delivery.Status.SKIPPED,
            error=f"endpoint disabled: {endpoint.disabled_reason}",
        )
    lease_seconds = leases.lease_seconds(leases.timeout_of(endpoint), batch=len(deliveries) > 1)
    ticket = admission.admit(
        endpoint=endpoint, delivery_uid=deliveries[0].uid, lease_seconds=lease_seconds, places=len(deliveries)
    )
    if ticket.defer_seconds is not None:
        if ticket.waits_for_place:
            return line.wait_in_line(endpoint, deliveries, lease, seconds=ticket.defer_seconds)
        try:
            return deferral.defer_all(deliveries, lease, seconds=ticket.defer_seconds, reason=ticket.reason)
        finally:
            if ticket.freed_a_place:
                line.send_on_next_in_line(endpoint.uid)
    if ticket.hold is not None and ticket.hold.left > 0:
        # Places are still free and batches wait in the endpoint's line (its cap rose since
        # the line formed, or several were freed together): they may take them now, rather
        # than when their line lease ends.
        line.send_on_next_in_line(endpoint.uid, places=ticket.hold.left)
    if secrets is None:
        try:
            secrets = endpoint_signing_secrets(endpoint=endpoint)
        except Exception:
            ticket.release()
            raise
    return Batch(endpoint, deliveries, lease, ticket, secrets, slow_start=admission.slow_start(endpoint))


async def send_all(batch: Batch) -> Batch:
    """Send the batch's deliveries in order, up to ``ticket.places`` at once; never raises.

    No further attempt starts when one has failed (the breaker decides what
    happens to the rest; see ``_carry_on``), when the batch is the breaker's
    probe (one attempt only), when the rate limit refuses, or when the send
    budget is spent (the lease covers the budget plus one timeout). What was
    not started is the batch's ``rest``.
    """
    places = asyncio.Semaphore(batch.ticket.places)
    began = time.monotonic()
    sends: list[asyncio.Task[None]] = []
    for index, delivery in enumerate(batch.deliveries):
        await places.acquire()
        if index and await _stop_before(batch, delivery, began):
            places.release()
            batch.rest = batch.deliveries[index:]
            break
        sends.append(asyncio.create_task(_send_one(batch, delivery, places)))
    await asyncio.gather(*sends)
    return batch


async def _stop_before(batch: Batch, delivery: Delivery, began: float) -> bool:
    """Whether the batch starts no more attempts before ``delivery`` (see ``send_all``)."""
    if batch.ticket.probe or time.monotonic() - began > settings.HOOKPOST_BATCH_SEND_BUDGET_SECONDS:
        return True
    loop = asyncio.get_running_loop()
    if batch.stopped:
        if not batch.slow_start or not await loop.run_in_executor(None, _carry_on, batch):
            return True
        batch.stopped = False
    if not batch.endpoint.rate_limit:
        return False
    take = functools.partial(admission.take_rate, endpoint=batch.endpoint, delivery_uid=delivery.uid)
    try:
        batch.rest_wait = await loop.run_in_executor(None, take)
    except Exception:
        logger.exception("rate limit unavailable for %s; handing the rest back", batch.endpoint.uid)
        return True
    return batch.rest_wait is not None


def _carry_on(batch: Batch) -> bool:
    """After a failed attempt of a ``slow_start`` batch: count its results so far in the
    breaker, and whether its circuit still lets attempts through; if not, the rest
    waits out the cool-down (``rest_wait``).

    A new or failing endpoint's batch goes on, one request at a time, until the
    failures open its circuit: they come from one claim, in a few round trips,
    rather than from a claim each, and its later work is then deferred at the
    hand-off without a task (``admission.held_by_open_circuits``). A proven
    endpoint's batch stops at its first failure.

    Runs on the send loop's executor threads: the connection a transition's
    write opens (the circuit mirrored on the endpoint's row) is closed here, so
    those threads keep none beside the process's bounded ones.
    """
    try:
        _settle(batch)
        wait = admission.circuit_wait(endpoint=batch.endpoint)
    except Exception:
        logger.exception("could not ask the breaker of %s; handing the rest back", batch.endpoint.uid)
        return False
    finally:
        connections.close_all()
    if wait is None:
        return True
    batch.rest_wait, batch.rest_reason = wait, admission.CIRCUIT_OPEN
    return False


async def _send_one(batch: Batch, delivery: Delivery, places: asyncio.Semaphore) -> None:
    endpoint = batch.endpoint
    try:
        started_at = timezone.now()
        request = outbound.build_request(delivery, endpoint, int(started_at.timestamp()), batch.secrets)
        result = await outbound.transport().post(
            request.url, request.headers, request.body, timeout=request.timeout
        )
    except Exception as exc:
        logger.exception("internal error delivering %s", delivery.uid, extra={"delivery": delivery.uid})
        batch.failed.append((delivery, exc))
        return
    finally:
        places.release()
    batch.results.append(result)
    try:
        decision = _decide(delivery, endpoint, result)
    except Exception as exc:
        logger.exception("internal error deciding %s", delivery.uid, extra={"delivery": delivery.uid})
        batch.failed.append((delivery, exc))
        return
    batch.sent.append(Sent(delivery, started_at, request, result, decision))
    if not result.ok:
        batch.stopped = True


def finish(batch: Batch) -> dict[int, str]:
    """After the sends: count the results in the breaker, free the places and send the
    endpoint's line on, record what went out, charge what our code failed on, hand
    back the rest; each delivery's status.

    The breaker counts before the places are free, so no request takes a place
    before the failures it follows are counted. The places are for requests in
    flight, so they are freed and the line sent on before recording: the
    endpoint's next batch is claimed while this one is recorded
    (``send_on_next_in_line`` never raises). What went out is recorded before
    the rest is handed back: trouble handing it back must never cost the record
    of a request that was sent.
    """
    ticket, lease, endpoint = batch.ticket, batch.lease, batch.endpoint
    statuses: dict[int, str] = {}
    try:
        _settle(batch)
        if ticket.free_places():
            line.send_on_next_in_line(endpoint.uid, places=ticket.places)
    finally:
        ticket.release()
    try:
        statuses.update(recording.record_all(batch.sent, lease))
        for delivery, exc in batch.failed:
            statuses[delivery.pk] = recording.record_internal_failure(delivery, lease, exc)
        statuses.update(deferral.hand_back(batch.rest, lease, batch.rest_wait, reason=batch.rest_reason))
    except Exception as exc:  # recording broke: charge every undecided delivery
        undecided = [d for d in batch.deliveries if d.pk not in statuses]
        statuses.update(_charge_all(endpoint, undecided, lease, exc))
    return statuses


def _charge_all(endpoint: Endpoint, deliveries: list[Delivery], lease: str, exc: Exception) -> dict[int, str]:
    logger.error(
        "internal error delivering to %s", endpoint.uid, exc_info=exc, extra={"endpoint": endpoint.uid}
    )
    return {d.pk: recording.record_internal_failure(d, lease, exc) for d in deliveries}


def _decide(delivery: Delivery, endpoint: Endpoint, result: TransportResult) -> retry.Decision:
    schedule = retry.schedule_for(endpoint.retry_schedule)
    return retry.decide(
        status=result.status,
        attempt_number=delivery.attempt_count - delivery.schedule_offset + 1,
        schedule=schedule,
        retry_after=result.headers.get("retry-after"),
    )


def _settle(batch: Batch) -> None:
    """Count the batch's results not yet counted in the endpoint's breaker, each run of
    alike results in one call.

    The places are freed by ``release``. Trouble here is logged, not charged
    to the deliveries as internal failures.
    """
    ticket, results = batch.ticket, batch.results[batch.settled :]
    batch.settled += len(results)
    runs: list[tuple[tuple[breaker.Outcome, bool], TransportResult, int]] = []
    for result in results:
        kind = (breaker.outcome_of(result), breaker.is_slow(result))
        if runs and runs[-1][0] == kind:
            runs[-1] = (kind, runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((kind, result, 1))
    try:
        for _, result, count in runs:
            ticket.settle(result, count)
    except Exception:
        logger.exception("could not count attempts in the breaker of %s", ticket.endpoint.uid)
