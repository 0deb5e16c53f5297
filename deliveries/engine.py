"""The delivery engine: one attempt of one delivery, from claim to transition.

    claim (conditional update on status + lease token)
      -> admission (deliveries.admission: circuit breaker, bulkheads, rate
         limit); refused -> deferred: next_attempt_at moves forward and the
         lease is released, no attempt spent, no worker held while it waits
      -> build the body once and sign those exact bytes (webhooks.signing)
      -> POST through the transport (deliveries.transport)
      -> classify the result (deliveries.retry)
      -> record the Attempt and move the delivery, in one transaction,
         only if we still hold the lease.

Two workers can never both finish one delivery: every write after the claim
is conditioned on the lease token the claim set, and a zero row count means
someone else owns it now.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, DateTimeField, F, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from config import metrics
from deliveries import admission, breaker, bulkhead, dispatch, operational, reply, retry, signals
from deliveries.copy_insert import copy_insert
from deliveries.models import Attempt, Delivery
from deliveries.transport import Transport, TransportResult
from webhooks import signing
from webhooks.models import Endpoint
from webhooks.selectors import endpoint_signing_secrets

logger = logging.getLogger(__name__)

# Header names whose values are secrets and never stored in attempt records.
_SENSITIVE_HEADER_PARTS = ("authorization", "token", "secret", "key", "cookie", "signature", "password")
REDACTED = "[redacted]"
DUE_STATUSES = (Delivery.Status.PENDING, Delivery.Status.FAILED)

_transport: Transport | None = None


def transport() -> Transport:
    """The process-wide transport (keeps keep-alive pools across attempts)."""
    global _transport
    if _transport is None:
        _transport = Transport()
    return _transport


@dataclass(frozen=True)
class OutboundRequest:
    url: str
    headers: dict[str, str]
    body: bytes
    timeout: float


def new_token() -> str:
    return uuid.uuid4().hex


# --- Claim -------------------------------------------------------------------------


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
    due = _due_among(delivery_ids, now)
    if token:
        due = due.filter(lease_token=token)
    else:
        due = due.filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
    claim_token = new_token()
    # Most endpoints keep the default timeout: claim with its lease, and
    # correct it below only for those that don't (before anything is sent).
    usual = _lease_seconds(_default_timeout(), batch=len(delivery_ids) > 1)
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
    for endpoint, group in _by_endpoint(claimed):
        seconds = _lease_seconds(_timeout_of(endpoint), batch=len(group) > 1)
        if seconds != usual:
            Delivery.objects.filter(pk__in=[d.pk for d in group], lease_token=claim_token).update(
                lease_expires_at=now + timedelta(seconds=seconds)
            )
    return claimed, claim_token


def _due_among(delivery_ids: Sequence[int], now: datetime) -> QuerySet[Delivery]:
    """Those of ``delivery_ids`` that are due at ``now`` (whoever holds them)."""
    return Delivery.objects.filter(
        pk__in=list(delivery_ids), status__in=DUE_STATUSES, next_attempt_at__lte=now
    )


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


def _lease_seconds(timeout: int, *, batch: bool) -> float:
    """How long a claim holds: one attempt's timeout and the margin, plus the send budget for a batch."""
    budget = settings.HOOKPOST_BATCH_SEND_BUDGET_SECONDS if batch else 0
    return timeout + settings.HOOKPOST_LEASE_MARGIN_SECONDS + budget


def _by_endpoint(deliveries: list[Delivery]) -> list[tuple[Endpoint, list[Delivery]]]:
    groups: dict[int, list[Delivery]] = {}
    for delivery in deliveries:
        groups.setdefault(delivery.endpoint_id, []).append(delivery)
    return [(group[0].endpoint, group) for group in groups.values()]


def _default_timeout() -> int:
    return min(settings.HOOKPOST_DEFAULT_TIMEOUT_SECONDS, settings.HOOKPOST_MAX_TIMEOUT_SECONDS)


def _timeout_of(endpoint: Endpoint) -> int:
    """The whole-request timeout of one attempt to ``endpoint``, in seconds."""
    timeout = endpoint.timeout_seconds or settings.HOOKPOST_DEFAULT_TIMEOUT_SECONDS
    return min(timeout, settings.HOOKPOST_MAX_TIMEOUT_SECONDS)


# --- Attempts ----------------------------------------------------------------------


@dataclass
class _Sent:
    """One attempt that went out and awaits recording."""

    delivery: Delivery
    started_at: datetime
    request: OutboundRequest
    result: TransportResult
    decision: retry.Decision


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
    (``_record_all``): a batch costs a handful of statements, not a handful
    per delivery. The dispatcher batches by endpoint (``deliveries.tasks``),
    so a slow receiver only ever delays its own deliveries.

    Exceptions in our own code are counted against the delivery they hit
    (``internal_failures``); after ``HOOKPOST_MAX_INTERNAL_FAILURES`` it is
    dead-lettered with the reason, so poison work cannot crash-loop a worker.

    ``endpoint_uid``, the endpoint of every delivery in the batch, comes with
    the tasks the dispatcher queues. With it, a batch for an endpoint whose
    places are all taken joins the endpoint's line unclaimed
    (``_wait_in_line_unclaimed``): a claim loads every delivery with its
    message, all thrown away when admission then refuses the batch, and a
    busy endpoint refuses about every other batch it is sent.
    """
    if endpoint_uid and token and bulkhead.is_full(endpoint_uid=endpoint_uid):
        return _wait_in_line_unclaimed(endpoint_uid, delivery_ids, token)
    claimed, lease = deliveries_claim(delivery_ids=delivery_ids, token=token)
    statuses: dict[int, str] = {}
    for endpoint, group in _by_endpoint(claimed):
        try:
            statuses.update(_attempt_all(endpoint, group, lease))
        except Exception as exc:  # admission or recording broke: charge every undecided delivery
            logger.exception(
                "internal error delivering to %s", endpoint.uid, extra={"endpoint": endpoint.uid}
            )
            for delivery in group:
                if delivery.pk not in statuses:
                    statuses[delivery.pk] = _internal_failure(delivery, lease, exc)
    return statuses


def _attempt_all(endpoint: Endpoint, deliveries: list[Delivery], lease: str) -> dict[int, str]:
    """Attempt one endpoint's claimed deliveries in order, then record them together.

    One admission covers the batch: the breaker is asked once and one bulkhead
    place is held, as the sends are sequential. The batch stops early, handing
    the rest back untouched (``_release``), when an attempt fails (the breaker
    decides what happens to the rest), when the breaker made this batch its
    probe (one attempt only), when the rate limit refuses, or when the send
    budget is spent (the lease covers the budget plus one timeout).
    """
    if not endpoint.enabled:
        return _finish_all(
            deliveries,
            lease,
            status=Delivery.Status.SKIPPED,
            error=f"endpoint disabled: {endpoint.disabled_reason}",
        )
    lease_seconds = _lease_seconds(_timeout_of(endpoint), batch=len(deliveries) > 1)
    ticket = admission.admit(endpoint=endpoint, delivery_uid=deliveries[0].uid, lease_seconds=lease_seconds)
    if ticket.defer_seconds is not None:
        if ticket.waits_for_place:
            return _wait_in_line(endpoint, deliveries, lease, seconds=ticket.defer_seconds)
        try:
            return _defer_all(deliveries, lease, seconds=ticket.defer_seconds, reason=ticket.reason)
        finally:
            if ticket.freed_a_place:
                _send_on_next_in_line(endpoint.uid)
    statuses: dict[int, str] = {}
    sent: list[_Sent] = []
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
                request = build_request(delivery, endpoint, int(started_at.timestamp()), secrets)
                result = transport().send(request.url, request.headers, request.body, timeout=request.timeout)
            except Exception as exc:
                logger.exception(
                    "internal error delivering %s", delivery.uid, extra={"delivery": delivery.uid}
                )
                statuses[delivery.pk] = _internal_failure(delivery, lease, exc)
                continue
            results.append(result)
            try:
                decision = _decide(delivery, endpoint, result)
            except Exception as exc:
                logger.exception("internal error deciding %s", delivery.uid, extra={"delivery": delivery.uid})
                statuses[delivery.pk] = _internal_failure(delivery, lease, exc)
                continue
            sent.append(_Sent(delivery, started_at, request, result, decision))
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
        statuses.update(_record_all(sent, lease))
        statuses.update(_hand_back(rest, lease, rest_wait))
    finally:
        if freed_a_place:
            _send_on_next_in_line(endpoint.uid)
    return statuses


def _hand_back(deliveries: list[Delivery], lease: str, wait: float | None) -> dict[int, str]:
    """Release (``wait`` None) or defer the deliveries a batch did not send.

    A failure here is logged only: the deliveries keep our lease until it
    expires, and then the scheduler hands them out again, no attempt spent.
    """
    if not deliveries:
        return {}
    try:
        if wait is None:
            return _release(deliveries, lease)
        return _defer_all(deliveries, lease, seconds=wait, reason=admission.RATE_LIMITED)
    except Exception:
        logger.exception(
            "could not hand back %d deliveries; they wait for their lease to expire", len(deliveries)
        )
        return {d.pk: "lease_kept" for d in deliveries}


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


def _release(deliveries: list[Delivery], lease: str) -> dict[int, str]:
    """Hand claimed deliveries back untouched (no attempt spent): due as before, unleased.

    The scheduler's next tick picks them up again; what happens to them then
    is the breaker's and the rate limit's call.
    """
    if deliveries:
        _leased(deliveries, lease).update(lease_token=None, lease_expires_at=None)
    return {d.pk: "released" for d in deliveries}


def _leased(deliveries: list[Delivery], lease: str):  # type: ignore[no-untyped-def]
    return Delivery.objects.filter(pk__in=[d.pk for d in deliveries], lease_token=lease)


def _move_leased(deliveries: list[Delivery], lease: str, **changes: Any) -> set[int]:
    """Apply ``changes`` (and ``updated_at``) to those of ``deliveries`` we still hold; their ids."""
    return {pk for (pk,) in _move(_leased(deliveries, lease), ("pk",), **changes)}


def _move(rows: QuerySet[Delivery], fields: tuple[str, ...], **changes: Any) -> list[tuple[Any, ...]]:
    """Lock ``rows`` and apply ``changes`` (and ``updated_at``); ``fields`` of each row moved."""
    with transaction.atomic():
        moved = list(rows.select_for_update().values_list(*fields))
        rows.update(**changes, updated_at=timezone.now())
    return moved


def _defer_all(deliveries: list[Delivery], lease: str, *, seconds: float, reason: str) -> dict[int, str]:
    """Put the deliveries back for ``seconds`` without an attempt; "deferred" each, or "lease_lost".

    Status and attempt count stay as they are; only ``next_attempt_at`` moves
    and the lease is released, so the scheduler hands them out again when due
    and no worker waits for them meanwhile.
    """
    now = timezone.now()
    moved = _move_leased(
        deliveries,
        lease,
        next_attempt_at=now + timedelta(seconds=seconds),
        lease_token=None,
        lease_expires_at=None,
    )
    _announce_deferred(_who(deliveries, moved), seconds=seconds, reason=reason)
    return {d.pk: ("deferred" if d.pk in moved else "lease_lost") for d in deliveries}


def _who(deliveries: list[Delivery], moved: set[int]) -> list[tuple[str, int, str]]:
    """(endpoint uid, tenant id, delivery uid) of each of ``deliveries`` in ``moved``."""
    return [(d.endpoint.uid, d.tenant_id, d.uid) for d in deliveries if d.pk in moved]


def _announce_deferred(deferred: list[tuple[str, int, str]], *, seconds: float, reason: str) -> None:
    """Log and signal (``delivery_deferred``) each deferred (endpoint uid, tenant id, delivery uid)."""
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


# How many lapsed entries one freed place skips in an endpoint's line, at most.
_LINE_SKIP_LIMIT = 20


def _wait_in_line(
    endpoint: Endpoint, deliveries: list[Delivery], lease: str, *, seconds: float
) -> dict[int, str]:
    """The endpoint has no free place: keep the deliveries due under a short lease and
    queue them in its line; "deferred" each, or "lease_lost".

    The batch that frees the next place sends them on at once
    (``_send_on_next_in_line``); a place freed between the refusal and the
    joining is taken up by the joiner (``_join_line``). Should nobody send
    them on (a lost line), the lease ends after ``seconds`` and the
    scheduler hands them out again: the plain deferral. No attempt is spent
    either way.
    """
    token = new_token()
    moved = _move_leased(
        deliveries, lease, lease_token=token, lease_expires_at=timezone.now() + timedelta(seconds=seconds)
    )
    if moved:
        _join_line(endpoint.uid, moved, token, seconds)
    _announce_deferred(_who(deliveries, moved), seconds=seconds, reason=admission.BULKHEAD)
    return {d.pk: ("deferred" if d.pk in moved else "lease_lost") for d in deliveries}


def _wait_in_line_unclaimed(endpoint_uid: str, delivery_ids: Sequence[int], token: str) -> dict[int, str]:
    """``_wait_in_line`` for a batch not yet claimed: its deliveries still due under the
    dispatch lease ``token`` move to a short lease of the line's, no row loaded.

    "deferred" for each delivery moved; the others (not due, leased to
    someone else) are left out, as a claim would leave them.
    """
    seconds = bulkhead.endpoint_wait()
    line_token = new_token()
    now = timezone.now()
    due = _due_among(delivery_ids, now).filter(lease_token=token)
    lease_ends = now + timedelta(seconds=seconds)
    moved = _move(due, ("pk", "tenant_id", "uid"), lease_token=line_token, lease_expires_at=lease_ends)
    if moved:
        _join_line(endpoint_uid, [pk for pk, _, _ in moved], line_token, seconds)
    _announce_deferred(
        [(endpoint_uid, tenant_id, uid) for _, tenant_id, uid in moved],
        seconds=seconds,
        reason=admission.BULKHEAD,
    )
    return {pk: "deferred" for pk, _, _ in moved}


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
    rows = _due_among(ids, now).filter(lease_token=token, endpoint_id__in=enabled)
    moved = _move(
        rows, ("pk", "tenant_id", "uid"), next_attempt_at=due_at, lease_token=None, lease_expires_at=None
    )
    who = {pk: (tenant_id, uid) for pk, tenant_id, uid in moved}
    for endpoint_uid, group in batches:
        deferred = [(endpoint_uid, *who[pk]) for pk in group if pk in who]
        if deferred:
            _announce_deferred(deferred, seconds=waits[endpoint_uid], reason=reason)
    return set(who)


def deliveries_release_unclaimed(*, delivery_ids: Sequence[int], token: str) -> int:
    """Give back the dispatch lease ``token`` on those of ``delivery_ids`` still under it,
    unclaimed: they stay due, and the scheduler hands them out when a queue has room.
    How many were released."""
    return Delivery.objects.filter(pk__in=list(delivery_ids), lease_token=token).update(
        lease_token=None, lease_expires_at=None, updated_at=timezone.now()
    )


def _join_line(endpoint_uid: str, delivery_ids: Iterable[int], token: str, seconds: float) -> None:
    """Queue the deliveries leased under ``token`` for ``seconds`` in the endpoint's line."""
    entry = json.dumps({"ids": sorted(delivery_ids), "token": token, "until": time.time() + seconds})
    if bulkhead.wait_in_line(endpoint_uid=endpoint_uid, entry=entry, seconds=seconds):
        # A place is free although the endpoint was full a moment ago: whoever freed it
        # may have found the line empty, so send the first in line on now.
        _send_on_next_in_line(endpoint_uid)


def _send_on_next_in_line(endpoint_uid: str) -> None:
    """A place at the endpoint was freed: queue the first batch waiting in its line.

    Its claim presents the line's lease token, so a batch the scheduler has
    handed out meanwhile (the lease ended) is not sent twice. Trouble is
    logged only: the waiting deliveries' lease ends and the scheduler sends them.
    """
    try:
        # Entries whose lease has ended are the scheduler's now: skip them, so the
        # freed place goes to a batch still waiting for it.
        for _ in range(_LINE_SKIP_LIMIT):
            entry = bulkhead.next_in_line(endpoint_uid=endpoint_uid)
            if entry is None:
                return
            waiting = json.loads(entry)
            if waiting["until"] > time.time():
                dispatch.enqueue_now(waiting["ids"], waiting["token"])
                return
    except Exception:
        logger.exception("could not send on the line of %s; its deferrals will end instead", endpoint_uid)


def build_request(
    delivery: Delivery, endpoint: Endpoint, timestamp: int, secrets: list[str] | None = None
) -> OutboundRequest:
    """The exact bytes and headers of one attempt (the body is the same on every attempt).

    ``secrets`` are the endpoint's signing secrets when the caller already
    loaded them (once per batch); otherwise they are read here.
    """
    message = delivery.message
    body = json.dumps(
        {"type": delivery.event_type.name, "timestamp": _iso(message.created_at), "data": message.payload},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    if secrets is None:
        secrets = endpoint_signing_secrets(endpoint=endpoint)
    headers = {
        **{str(k): str(v) for k, v in (endpoint.headers or {}).items()},
        "Content-Type": "application/json",
        "webhook-id": message.uid,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(secrets, message.uid, timestamp, body),
    }
    return OutboundRequest(url=endpoint.url, headers=headers, body=body, timeout=float(_timeout_of(endpoint)))


class _LeaseLost(Exception):
    """A batch's lease no longer holds for some of its deliveries."""


def _record_all(sent: list[_Sent], lease: str) -> dict[int, str]:
    """Record the attempts that went out and move their deliveries; the status of each.

    The hot path, a batch that all succeeded, is one transaction: one UPDATE
    per status code (normally one), one COPY of all attempts
    (``deliveries.copy_insert``) and one endpoint update. Anything else (a
    failure, a lost lease, a row that breaks a constraint, any error at all)
    is recorded attempt by attempt (``_record_sure``), so one bad delivery
    neither hides nor poisons the others.
    """
    if len(sent) > 1 and all(item.decision.verdict is retry.Verdict.SUCCEEDED for item in sent):
        try:
            statuses = _record_successes(sent, lease)
        except Exception:
            logger.info(
                "recording %d attempts together failed; recording them one by one", len(sent), exc_info=True
            )
        else:
            for item in sent:
                _announce(item, statuses[item.delivery.pk])
            return statuses
    return {item.delivery.pk: _record_sure(item, lease) for item in sent}


def _record_sure(item: _Sent, lease: str) -> str:
    """``_record``; should that fail, ``_record`` again without the reply's headers
    and body (``_without_reply``); the resulting status.

    A request that was sent is answered for by the receiver: its status decides
    the delivery's fate, and our trouble storing what came back must neither
    send it again nor count against it. Only when even the reply-free record
    fails (the database is unreachable, or a bug in our own code) is it an
    internal failure, counted against the delivery (``_internal_failure``).
    """
    uid = item.delivery.uid
    try:
        return _record(item, lease)
    except Exception as exc:
        logger.exception(
            "could not record the reply to %s; recording the attempt without it", uid, extra={"delivery": uid}
        )
        try:
            return _record(_without_reply(item, exc), lease)
        except Exception as again:
            logger.exception("internal error recording %s", uid, extra={"delivery": uid})
            return _internal_failure(item.delivery, lease, again)


def _without_reply(item: _Sent, exc: Exception) -> _Sent:
    """``item`` reduced to what is always storable: status, timing, error class and a
    note of why the reply's headers, body and our request headers are missing."""
    result = item.result
    note = f"the reply could not be stored ({type(exc).__name__})"
    message = reply.text(f"{result.error_message}; {note}" if result.error_message else note)
    return dataclasses.replace(
        item,
        request=dataclasses.replace(item.request, headers={}),
        result=dataclasses.replace(result, headers={}, body=b"", error_message=message),
    )


def _record_successes(sent: list[_Sent], lease: str) -> dict[int, str]:
    now = timezone.now()
    by_code: dict[int | None, list[int]] = {}
    for item in sent:
        by_code.setdefault(item.result.status, []).append(item.delivery.pk)
    with transaction.atomic():
        for code, pks in by_code.items():
            changes = _changes(sent[0], now, code=code)
            if Delivery.objects.filter(pk__in=pks, lease_token=lease).update(**changes) != len(pks):
                raise _LeaseLost  # rolls the batch back; _record_all goes one by one
        copy_insert(Attempt, [_attempt_row(item) for item in sent])
        _note_endpoint_outcome(sent[0].delivery.endpoint, ok=True, now=now)
    return {item.delivery.pk: str(Delivery.Status.SUCCEEDED) for item in sent}


def _changes(item: _Sent, now: datetime, *, code: int | None) -> dict[str, Any]:
    """The delivery's columns after this attempt (``code`` is the response status)."""
    error = _error_text(item.result)
    decision = item.decision
    changes: dict[str, Any] = {
        "attempt_count": F("attempt_count") + 1,
        "last_status_code": code,
        "last_error": error,
        "lease_token": None,
        "lease_expires_at": None,
        "next_trigger": Attempt.Trigger.SCHEDULED,
        "internal_failures": 0,
        "updated_at": now,
    }
    if decision.verdict is retry.Verdict.SUCCEEDED:
        changes.update(status=Delivery.Status.SUCCEEDED, next_attempt_at=None, finished_at=now)
    elif decision.verdict is retry.Verdict.RETRY:
        assert decision.delay_seconds is not None
        changes.update(
            status=Delivery.Status.FAILED, next_attempt_at=now + timedelta(seconds=decision.delay_seconds)
        )
    else:
        reason = (
            "endpoint answered 410 Gone" if decision.verdict is retry.Verdict.GONE else "retries exhausted"
        )
        changes.update(
            status=Delivery.Status.DEAD,
            next_attempt_at=None,
            finished_at=now,
            last_error=f"{reason}; {error}".strip("; "),
        )
    return changes


def _attempt_row(item: _Sent) -> dict[str, Any]:
    """The Attempt row of one sent request, by field attname (``copy_insert``'s rows)."""
    result, delivery = item.result, item.delivery
    return {
        "delivery_id": delivery.pk,
        "number": delivery.attempt_count + 1,
        "trigger": delivery.next_trigger,
        "started_at": item.started_at,
        "duration_ms": result.duration_ms,
        "request_headers": redact_headers(item.request.headers),
        "response_status": result.status,
        "response_headers": result.headers,  # storable as the transport returns them
        "response_body": reply.excerpt(result.body, settings.HOOKPOST_RESPONSE_EXCERPT_BYTES),
        "error_class": result.error_class or ("" if result.ok else "HTTPStatus"),
        "error_message": result.error_message or ("" if result.ok else f"HTTP {result.status}"),
    }


def _record(item: _Sent, lease: str) -> str:
    """Record one attempt and move its delivery, in one transaction, if we still hold the lease."""
    delivery, result, decision = item.delivery, item.result, item.decision
    now = timezone.now()
    changes = _changes(item, now, code=result.status)
    with transaction.atomic():
        moved = Delivery.objects.filter(pk=delivery.pk, lease_token=lease).update(**changes)
        if not moved:
            # Our lease expired and another worker owns the delivery now; it
            # records its own attempt. Ours is not written, to keep one story.
            logger.warning("lease lost for %s; attempt not recorded", delivery.uid)
            return "lease_lost"
        Attempt(**_attempt_row(item)).save(force_insert=True)
        _note_endpoint_outcome(delivery.endpoint, ok=result.ok, now=now)
        if decision.verdict is retry.Verdict.GONE:
            operational.endpoint_disable_with_notice(
                endpoint=delivery.endpoint, reason="The receiver answered 410 Gone.", trigger="gone"
            )
        elif not result.ok and operational.failing_too_long(delivery.endpoint, now):
            operational.endpoint_disable_with_notice(
                endpoint=delivery.endpoint, reason=operational.auto_disable_reason(), trigger="failing"
            )
        if decision.verdict is retry.Verdict.EXHAUSTED:
            operational.message_attempt_exhausted(
                delivery=delivery,
                attempts=delivery.attempt_count + 1,
                status=result.status,
                last_error=_error_text(result),
            )
    status = str(changes["status"])
    _announce(item, status)
    return status


def _announce(item: _Sent, status: str) -> None:
    """Log and count one recorded attempt."""
    delivery, result = item.delivery, item.result
    logger.info(
        "attempt %s of %s: %s -> %s",
        delivery.attempt_count + 1,
        delivery.uid,
        result.status or result.error_class,
        status,
        extra={"delivery": delivery.uid, "endpoint": delivery.endpoint.uid, "tenant": delivery.tenant_id},
    )
    metrics.record_attempt(
        outcome=status, duration_seconds=result.duration_ms / 1000, tenant_uid=str(delivery.tenant_id)
    )


def _finish_all(deliveries: list[Delivery], lease: str, *, status: str, error: str) -> dict[int, str]:
    """End the deliveries without an attempt (``status``: skipped), where we still hold the lease."""
    moved = _move_leased(
        deliveries,
        lease,
        status=status,
        last_error=error,
        next_attempt_at=None,
        lease_token=None,
        lease_expires_at=None,
    )
    return {d.pk: (status if d.pk in moved else "lease_lost") for d in deliveries}


def _internal_failure(delivery: Delivery, lease: str, exc: Exception) -> str:
    failures = delivery.internal_failures + 1
    reason = reply.text(f"internal error: {type(exc).__name__}: {exc}")
    if failures >= settings.HOOKPOST_MAX_INTERNAL_FAILURES:
        status, next_at, finished = Delivery.Status.DEAD, None, timezone.now()
    else:
        status = delivery.status
        next_at = timezone.now() + timedelta(seconds=30 * failures)
        finished = None
    moved = Delivery.objects.filter(pk=delivery.pk, lease_token=lease).update(
        status=status,
        internal_failures=failures,
        last_error=reason,
        next_attempt_at=next_at,
        finished_at=finished,
        lease_token=None,
        lease_expires_at=None,
        updated_at=timezone.now(),
    )
    return str(status) if moved else "lease_lost"


def _note_endpoint_outcome(endpoint: Endpoint, *, ok: bool, now: datetime) -> None:
    """Keep the endpoint's last success/failure columns roughly current.

    Written at most once a second per endpoint on the success path, so a busy
    endpoint does not turn every delivery into an extra hot-row update.
    ``failing_since`` marks the start of the current run of failures (the
    auto-disable window); a success clears it.
    """
    recent = now - timedelta(seconds=1)
    if ok:
        if (
            endpoint.last_success_at is not None
            and endpoint.last_success_at >= recent
            and not endpoint.consecutive_failures
            and endpoint.failing_since is None
        ):
            # The row as loaded with the claim, moments ago, needs nothing: skip the
            # round trip. A failure another worker counted since then stays until
            # the next success loads it (the next claim reads it fresh).
            return
        Endpoint.objects.filter(pk=endpoint.pk).filter(
            Q(last_success_at__isnull=True)
            | Q(last_success_at__lt=recent)
            | Q(consecutive_failures__gt=0)
            | Q(failing_since__isnull=False)
        ).update(last_success_at=now, consecutive_failures=0, failing_since=None)
    else:
        Endpoint.objects.filter(pk=endpoint.pk).update(
            last_failure_at=now,
            consecutive_failures=F("consecutive_failures") + 1,
            failing_since=Coalesce(F("failing_since"), Value(now, output_field=DateTimeField())),
        )


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers as recorded: signatures and credential-like values replaced."""
    redacted = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == "webhook-signature":
            redacted[name] = " ".join(f"{part.split(',', 1)[0]},{REDACTED}" for part in value.split())
        elif any(part in lowered for part in _SENSITIVE_HEADER_PARTS):
            redacted[name] = REDACTED
        else:
            redacted[name] = value
    return redacted


def _error_text(result: TransportResult) -> str:
    if result.error_class:
        return f"{result.error_class}: {result.error_message}"
    if not result.ok:
        return f"HTTP {result.status}"
    return ""


def _iso(moment: datetime) -> str:
    """``2026-11-23T12:00:00.000000Z`` (isoformat: a third of strftime's cost)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"
