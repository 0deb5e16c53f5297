"""The delivery engine: the attempt loop, one batch of one endpoint from claim to record.

    claim (deliveries.leases: conditional update on status + lease token)
      -> admission (deliveries.admission: circuit breaker, bulkheads, rate
         limit); refused -> deferred (deliveries.deferral) or queued in the
         endpoint's line (deliveries.line): no attempt spent, no worker held
      -> build the body once and sign those exact bytes (deliveries.outbound)
      -> POST through the transport (deliveries.transport)
      -> classify the result (deliveries.retry)
      -> record the Attempt and move the delivery, in one transaction,
         only if we still hold the lease (deliveries.recording).

Two workers can never both finish one delivery: every write after the claim
is conditioned on the lease token the claim set, and a zero row count means
someone else owns it now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from django.conf import settings
from django.utils import timezone

from deliveries import admission, breaker, bulkhead, deferral, leases, line, outbound, recording, retry
from deliveries.models import Delivery
from deliveries.recording import Sent
from deliveries.transport import TransportResult
from webhooks.models import Endpoint
from webhooks.selectors import endpoint_signing_secrets

logger = logging.getLogger(__name__)


def delivery_run(*, delivery_id: int, token: str | None) -> str | None:
    """Claim and attempt one delivery; return the resulting status, or None if not claimed."""
    return delivery_run_batch(delivery_ids=[delivery_id], token=token).get(delivery_id)


def delivery_run_batch(
    *, delivery_ids: Sequence[int], token: str | None, endpoint_uid: str | None = None
) -> dict[int, str]:
    """Claim and attempt a batch of deliveries; the resulting status of each claimed one.

    Deliveries not claimed (not due, leased to someone else) are absent from
    the result. Each endpoint's deliveries go out one after another over its
    keep-alive connection, and their outcomes are written together
    (``recording.record_all``): a batch costs a handful of statements, not a handful
    per delivery. The dispatcher batches by endpoint (``deliveries.tasks``),
    so a slow receiver only ever delays its own deliveries.

    Exceptions in our own code are counted against the delivery they hit
    (``internal_failures``); after ``HOOKPOST_MAX_INTERNAL_FAILURES`` it is
    dead-lettered with the reason, so poison work cannot crash-loop a worker.

    ``endpoint_uid``, the endpoint of every delivery in the batch, comes with
    the tasks the dispatcher queues. With it, a batch for an endpoint whose
    places are all taken joins the endpoint's line unclaimed
    (``line.wait_in_line_unclaimed``): a claim loads every delivery with its
    message, all thrown away when admission then refuses the batch, and a
    busy endpoint refuses about every other batch it is sent.
    """
    if endpoint_uid and token and bulkhead.is_full(endpoint_uid=endpoint_uid):
        return line.wait_in_line_unclaimed(endpoint_uid, delivery_ids, token)
    claimed, lease = leases.deliveries_claim(delivery_ids=delivery_ids, token=token)
    statuses: dict[int, str] = {}
    for endpoint, group in leases.by_endpoint(claimed):
        try:
            statuses.update(_attempt_all(endpoint, group, lease))
        except Exception as exc:  # admission or recording broke: charge every undecided delivery
            logger.exception(
                "internal error delivering to %s", endpoint.uid, extra={"endpoint": endpoint.uid}
            )
            for delivery in group:
                if delivery.pk not in statuses:
                    statuses[delivery.pk] = recording.record_internal_failure(delivery, lease, exc)
    return statuses


def _attempt_all(endpoint: Endpoint, deliveries: list[Delivery], lease: str) -> dict[int, str]:
    """Attempt one endpoint's claimed deliveries in order, then record them together.

    One admission covers the batch: the breaker is asked once and one bulkhead
    place is held, as the sends are sequential. The batch stops early, handing
    the rest back untouched (``deferral.hand_back``), when an attempt fails (the breaker
    decides what happens to the rest), when the breaker made this batch its
    probe (one attempt only), when the rate limit refuses, or when the send
    budget is spent (the lease covers the budget plus one timeout).
    """
    if not endpoint.enabled:
        return deferral.finish_all(
            deliveries,
            lease,
            status=Delivery.Status.SKIPPED,
            error=f"endpoint disabled: {endpoint.disabled_reason}",
        )
    lease_seconds = leases.lease_seconds(leases.timeout_of(endpoint), batch=len(deliveries) > 1)
    ticket = admission.admit(endpoint=endpoint, delivery_uid=deliveries[0].uid, lease_seconds=lease_seconds)
    if ticket.defer_seconds is not None:
        if ticket.waits_for_place:
            return line.wait_in_line(endpoint, deliveries, lease, seconds=ticket.defer_seconds)
        try:
            return deferral.defer_all(deliveries, lease, seconds=ticket.defer_seconds, reason=ticket.reason)
        finally:
            if ticket.freed_a_place:
                line.send_on_next_in_line(endpoint.uid)
    statuses: dict[int, str] = {}
    sent: list[Sent] = []
    results: list[TransportResult] = []
    rest: list[Delivery] = []  # claimed but not to be sent now: handed back after recording
    rest_wait: float | None = None  # None: released as they are; else deferred this long
    began = time.monotonic()
    secrets: list[str] | None = None
    try:
        for index, delivery in enumerate(deliveries):
            if index and (
                ticket.probe or time.monotonic() - began > settings.HOOKPOST_BATCH_SEND_BUDGET_SECONDS
            ):
                rest = deliveries[index:]
                break
            if index:
                try:
                    rest_wait = admission.take_rate(endpoint=endpoint, delivery_uid=delivery.uid)
                except Exception:
                    logger.exception("rate limit unavailable for %s; handing the rest back", endpoint.uid)
                    rest = deliveries[index:]
                    break
                if rest_wait is not None:
                    rest = deliveries[index:]
                    break
            try:
                if secrets is None:
                    secrets = endpoint_signing_secrets(endpoint=endpoint)
                started_at = timezone.now()
                request = outbound.build_request(delivery, endpoint, int(started_at.timestamp()), secrets)
                result = outbound.transport().send(
                    request.url, request.headers, request.body, timeout=request.timeout
                )
            except Exception as exc:
                logger.exception(
                    "internal error delivering %s", delivery.uid, extra={"delivery": delivery.uid}
                )
                statuses[delivery.pk] = recording.record_internal_failure(delivery, lease, exc)
                continue
            results.append(result)
            try:
                decision = _decide(delivery, endpoint, result)
            except Exception as exc:
                logger.exception("internal error deciding %s", delivery.uid, extra={"delivery": delivery.uid})
                statuses[delivery.pk] = recording.record_internal_failure(delivery, lease, exc)
                continue
            sent.append(Sent(delivery, started_at, request, result, decision))
            if not result.ok:
                rest = deliveries[index + 1 :]
                break
    finally:
        _settle(ticket, results)
        ticket.release()
    freed_a_place = ticket.hold is not None and ticket.hold.endpoint_key is not None
    try:
        # What went out is recorded first: trouble handing back the rest must never cost
        # the record of a request that was sent. The line waits for that too.
        statuses.update(recording.record_all(sent, lease))
        statuses.update(deferral.hand_back(rest, lease, rest_wait))
    finally:
        if freed_a_place:
            line.send_on_next_in_line(endpoint.uid)
    return statuses


def _decide(delivery: Delivery, endpoint: Endpoint, result: TransportResult) -> retry.Decision:
    schedule = retry.schedule_for(endpoint.retry_schedule)
    return retry.decide(
        status=result.status,
        attempt_number=delivery.attempt_count - delivery.schedule_offset + 1,
        schedule=schedule,
        retry_after=result.headers.get("retry-after"),
    )


def _settle(ticket: admission.Ticket, results: list[TransportResult]) -> None:
    """Count the batch's results in the endpoint's breaker, each run of alike results in one call.

    The places are freed by ``release``. Trouble here is logged, not charged
    to the deliveries as internal failures.
    """
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
