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

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from config import metrics
from deliveries import admission, operational, retry, signals
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


def delivery_claim(*, delivery_id: int, token: str | None) -> tuple[Delivery, str] | None:
    """Take the lease on a due delivery; None if it is not due or someone else holds it.

    ``token`` is the dispatch lease the task was queued with; without one (a
    task from an older queue entry) only an unleased or expired delivery is
    claimed.
    """
    now = timezone.now()
    due = Delivery.objects.filter(pk=delivery_id, status__in=DUE_STATUSES, next_attempt_at__lte=now)
    if token:
        due = due.filter(lease_token=token)
    else:
        due = due.filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
    claim_token = new_token()
    # A generous lease first; it is shortened to the endpoint's timeout below.
    claimed = due.update(
        lease_token=claim_token,
        lease_expires_at=now
        + timedelta(seconds=settings.HOOKPOST_MAX_TIMEOUT_SECONDS + settings.HOOKPOST_LEASE_MARGIN_SECONDS),
    )
    if not claimed:
        return None
    delivery = (
        Delivery.objects.select_related("endpoint", "message", "event_type")
        .filter(pk=delivery_id, lease_token=claim_token)
        .first()
    )
    if delivery is None:
        return None
    # Shorten the lease to what this endpoint's attempt may take, so a worker
    # killed mid-request is replaced after its timeout, not after the maximum.
    lease_seconds = _timeout_of(delivery.endpoint) + settings.HOOKPOST_LEASE_MARGIN_SECONDS
    Delivery.objects.filter(pk=delivery_id, lease_token=claim_token).update(
        lease_expires_at=now + timedelta(seconds=lease_seconds)
    )
    return delivery, claim_token


def _timeout_of(endpoint: Endpoint) -> int:
    """The whole-request timeout of one attempt to ``endpoint``, in seconds."""
    timeout = endpoint.timeout_seconds or settings.HOOKPOST_DEFAULT_TIMEOUT_SECONDS
    return min(timeout, settings.HOOKPOST_MAX_TIMEOUT_SECONDS)


# --- One attempt -------------------------------------------------------------------


def delivery_run(*, delivery_id: int, token: str | None) -> str | None:
    """Claim and attempt one delivery; return the resulting status, or None if not claimed.

    Exceptions in our own code after the claim are counted against the
    delivery (``internal_failures``); after ``HOOKPOST_MAX_INTERNAL_FAILURES``
    the delivery is dead-lettered with the reason, so poison work cannot
    crash-loop a worker.
    """
    claim = delivery_claim(delivery_id=delivery_id, token=token)
    if claim is None:
        return None
    delivery, lease = claim
    try:
        return _attempt(delivery, lease)
    except Exception as exc:
        logger.exception("internal error delivering %s", delivery.uid, extra={"delivery": delivery.uid})
        return _internal_failure(delivery, lease, exc)


def _attempt(delivery: Delivery, lease: str) -> str:
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        return _finish(
            delivery,
            lease,
            status=Delivery.Status.SKIPPED,
            error=f"endpoint disabled: {endpoint.disabled_reason}",
        )
    ticket = admission.admit(
        endpoint=endpoint,
        delivery_uid=delivery.uid,
        lease_seconds=_timeout_of(endpoint) + settings.HOOKPOST_LEASE_MARGIN_SECONDS,
    )
    if ticket.defer_seconds is not None:
        return _defer(delivery, lease, seconds=ticket.defer_seconds, reason=ticket.reason)
    try:
        started_at = timezone.now()
        request = build_request(delivery, endpoint, int(started_at.timestamp()))
        result = transport().send(request.url, request.headers, request.body, timeout=request.timeout)
    except BaseException:
        ticket.release()  # nothing was sent: hand back the places (and the probe)
        raise
    try:
        schedule = retry.schedule_for(endpoint.retry_schedule)
        number_in_schedule = delivery.attempt_count - delivery.schedule_offset + 1
        decision = retry.decide(
            status=result.status,
            attempt_number=number_in_schedule,
            schedule=schedule,
            retry_after=result.headers.get("retry-after"),
        )
        return _record(delivery, lease, started_at, request, result, decision)
    finally:
        _settle(ticket, result)


def _settle(ticket: admission.Ticket, result: TransportResult) -> None:
    """Count the result in the endpoint's breaker and free its bulkhead places.

    The attempt is already recorded; trouble here is logged, not charged to
    the delivery as an internal failure.
    """
    try:
        ticket.settle(result)
    except Exception:
        logger.exception("could not count an attempt in the breaker of %s", ticket.endpoint.uid)
    finally:
        ticket.release()


def _defer(delivery: Delivery, lease: str, *, seconds: float, reason: str) -> str:
    """Put the delivery back for ``seconds`` without an attempt; "deferred", or "lease_lost".

    Status and attempt count stay as they are; only ``next_attempt_at`` moves
    and the lease is released, so the scheduler hands it out again when due
    and no worker waits for it meanwhile.
    """
    now = timezone.now()
    moved = Delivery.objects.filter(pk=delivery.pk, lease_token=lease).update(
        next_attempt_at=now + timedelta(seconds=seconds),
        lease_token=None,
        lease_expires_at=None,
        updated_at=now,
    )
    if not moved:
        return "lease_lost"
    logger.debug(
        "deferred %s for %.2f s (%s)",
        delivery.uid,
        seconds,
        reason,
        extra={"delivery": delivery.uid, "endpoint": delivery.endpoint.uid, "tenant": delivery.tenant_id},
    )
    signals.delivery_deferred.send(
        sender=Delivery,
        endpoint_uid=delivery.endpoint.uid,
        tenant_id=delivery.tenant_id,
        delivery_uid=delivery.uid,
        reason=reason,
        seconds=seconds,
    )
    return "deferred"


def build_request(delivery: Delivery, endpoint: Endpoint, timestamp: int) -> OutboundRequest:
    """The exact bytes and headers of one attempt (the body is the same on every attempt)."""
    message = delivery.message
    body = json.dumps(
        {"type": delivery.event_type.name, "timestamp": _iso(message.created_at), "data": message.payload},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    secrets = endpoint_signing_secrets(endpoint=endpoint)
    headers = {
        **{str(k): str(v) for k, v in (endpoint.headers or {}).items()},
        "Content-Type": "application/json",
        "webhook-id": message.uid,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(secrets, message.uid, timestamp, body),
    }
    return OutboundRequest(url=endpoint.url, headers=headers, body=body, timeout=float(_timeout_of(endpoint)))


def _record(
    delivery: Delivery,
    lease: str,
    started_at: datetime,
    request: OutboundRequest,
    result: TransportResult,
    decision: retry.Decision,
) -> str:
    now = timezone.now()
    error = _error_text(result)
    changes: dict[str, Any] = {
        "attempt_count": F("attempt_count") + 1,
        "last_status_code": result.status,
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
    with transaction.atomic():
        moved = Delivery.objects.filter(pk=delivery.pk, lease_token=lease).update(**changes)
        if not moved:
            # Our lease expired and another worker owns the delivery now; it
            # records its own attempt. Ours is not written, to keep one story.
            logger.warning("lease lost for %s; attempt not recorded", delivery.uid)
            return "lease_lost"
        Attempt.objects.create(
            delivery=delivery,
            number=delivery.attempt_count + 1,
            trigger=delivery.next_trigger,
            started_at=started_at,
            duration_ms=result.duration_ms,
            request_headers=redact_headers(request.headers),
            response_status=result.status,
            response_headers=dict(list(result.headers.items())[:50]),
            response_body=_excerpt(result.body),
            error_class=result.error_class or ("" if result.ok else "HTTPStatus"),
            error_message=result.error_message or ("" if result.ok else f"HTTP {result.status}"),
        )
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
                delivery=delivery, attempts=delivery.attempt_count + 1, status=result.status, last_error=error
            )
    logger.info(
        "attempt %s of %s: %s -> %s",
        delivery.attempt_count + 1,
        delivery.uid,
        result.status or result.error_class,
        changes["status"],
        extra={"delivery": delivery.uid, "endpoint": delivery.endpoint.uid, "tenant": delivery.tenant_id},
    )
    metrics.record_attempt(
        outcome=str(changes["status"]),
        duration_seconds=result.duration_ms / 1000,
        tenant_uid=str(delivery.tenant_id),
    )
    return str(changes["status"])


def _finish(delivery: Delivery, lease: str, *, status: str, error: str) -> str:
    moved = Delivery.objects.filter(pk=delivery.pk, lease_token=lease).update(
        status=status,
        last_error=error,
        next_attempt_at=None,
        lease_token=None,
        lease_expires_at=None,
        updated_at=timezone.now(),
    )
    return status if moved else "lease_lost"


def _internal_failure(delivery: Delivery, lease: str, exc: Exception) -> str:
    failures = delivery.internal_failures + 1
    reason = f"internal error: {type(exc).__name__}: {exc}"[:1000]
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


def _excerpt(body: bytes) -> str:
    return body[: settings.HOOKPOST_RESPONSE_EXCERPT_BYTES].decode("utf-8", errors="replace")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
