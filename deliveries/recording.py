"""Recording: the Attempt row of each request that went out and its delivery's
move, in one transaction under the lease, and internal failures charged to a delivery.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from config import metrics
from deliveries import operational, reply, retry
from deliveries.copy_insert import copy_insert
from deliveries.models import Attempt, Delivery
from deliveries.outbound import OutboundRequest, redact_headers
from deliveries.transport import TransportResult
from webhooks.models import Endpoint

logger = logging.getLogger(__name__)


@dataclass
class Sent:
    """One attempt that went out and awaits recording."""

    delivery: Delivery
    started_at: datetime
    request: OutboundRequest
    result: TransportResult
    decision: retry.Decision


class _LeaseLost(Exception):
    """A batch's lease no longer holds for some of its deliveries."""


def record_all(sent: list[Sent], lease: str) -> dict[int, str]:
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
                _announce_attempt(item, statuses[item.delivery.pk])
            return statuses
    return {item.delivery.pk: _record_sure(item, lease) for item in sent}


def _record_sure(item: Sent, lease: str) -> str:
    """``_record``; should that fail, ``_record`` again without the reply's headers
    and body (``_without_reply``); the resulting status.

    A request that was sent is answered for by the receiver: its status decides
    the delivery's fate, and our trouble storing what came back must neither
    send it again nor count against it. Only when even the reply-free record
    fails (the database is unreachable, or a bug in our own code) is it an
    internal failure, counted against the delivery (``record_internal_failure``).
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
            return record_internal_failure(item.delivery, lease, again)


def _without_reply(item: Sent, exc: Exception) -> Sent:
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


def _record_successes(sent: list[Sent], lease: str) -> dict[int, str]:
    now = timezone.now()
    by_code: dict[int | None, list[int]] = {}
    for item in sent:
        by_code.setdefault(item.result.status, []).append(item.delivery.pk)
    with transaction.atomic():
        for code, pks in by_code.items():
            changes = _columns_after(sent[0], now, code=code)
            if Delivery.objects.filter(pk__in=pks, lease_token=lease).update(**changes) != len(pks):
                raise _LeaseLost  # rolls the batch back; record_all goes one by one
        copy_insert(Attempt, [_attempt_row(item) for item in sent])
        _note_endpoint_outcome(sent[0].delivery.endpoint, ok=True, now=now)
    return {item.delivery.pk: str(Delivery.Status.SUCCEEDED) for item in sent}


def _columns_after(item: Sent, now: datetime, *, code: int | None) -> dict[str, Any]:
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


def _attempt_row(item: Sent) -> dict[str, Any]:
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


def _record(item: Sent, lease: str) -> str:
    """Record one attempt and move its delivery, in one transaction, if we still hold the lease."""
    delivery, result, decision = item.delivery, item.result, item.decision
    now = timezone.now()
    changes = _columns_after(item, now, code=result.status)
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
    _announce_attempt(item, status)
    return status


def _announce_attempt(item: Sent, status: str) -> None:
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


def record_internal_failure(delivery: Delivery, lease: str, exc: Exception) -> str:
    """Charge ``exc``, an error of our own, to ``delivery`` if we still hold it: due again
    later, dead after ``HOOKPOST_MAX_INTERNAL_FAILURES``; the status, or "lease_lost"."""
    failures = delivery.internal_failures + 1
    reason = reply.text(f"internal error: {type(exc).__name__}: {exc}")
    status: str
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


def _error_text(result: TransportResult) -> str:
    if result.error_class:
        return f"{result.error_class}: {result.error_message}"
    if not result.ok:
        return f"HTTP {result.status}"
    return ""
