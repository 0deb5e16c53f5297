"""Operational events: what operators and tenants are told about endpoints and messages.

Kinds (``OperationalEvent.Kind``):

- ``endpoint.disabled``: an endpoint was disabled by us, because it kept
  failing for ``HOOKPOST_AUTO_DISABLE_AFTER_SECONDS`` with no success
  (``trigger: "failing"``) or answered ``410 Gone`` (``trigger: "gone"``).
  The tenant's members are emailed (Django's email backend).
- ``message.attempt.exhausted``: a delivery used up its retries and is dead.
- ``endpoint.recovered``: an endpoint whose circuit had opened answered its
  probe and its circuit closed.

Each event is a row written in the transaction of the change it reports, so
it exists exactly when the change does. If ``HOOKPOST_OPERATOR_WEBHOOK_URL``
is set, a maintenance task POSTs the event there after commit, as a Standard
Webhooks request signed with ``HOOKPOST_OPERATOR_WEBHOOK_SECRET``
(``webhooks.signing``) through the same hardened transport as deliveries
(``deliveries.transport``: the URL must pass the target-address policy). The
body is ``{"type": <kind>, "timestamp": <ISO 8601>, "data": <payload>}`` with
``webhook-id`` = the event id. Emails and operator posts are best effort: a
failure is logged (and kept on the row), never raised into delivery work.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.mail import send_mass_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from deliveries import outbound, signals
from deliveries.models import Delivery, OperationalEvent
from deliveries.outbound import iso
from webhooks import signing
from webhooks.models import Endpoint, Membership, Tenant

logger = logging.getLogger(__name__)

# --- Recording ------------------------------------------------------------------------


def event_record(
    *, kind: str, tenant_id: int, endpoint: Endpoint | None, payload: dict[str, Any]
) -> OperationalEvent:
    """Write an event row (in the caller's transaction) and, after commit, post it to the operator URL."""
    event = OperationalEvent.objects.create(
        kind=kind, tenant_id=tenant_id, endpoint=endpoint, payload=payload
    )
    signals.operational_event_recorded.send(
        sender=OperationalEvent,
        kind=kind,
        event_uid=event.uid,
        tenant_id=tenant_id,
        endpoint_uid=endpoint.uid if endpoint else "",
    )
    if settings.HOOKPOST_OPERATOR_WEBHOOK_URL:
        transaction.on_commit(lambda: _enqueue_notify(event.pk))
    return event


def endpoint_disable_with_notice(*, endpoint: Endpoint, reason: str, trigger: str) -> bool:
    """Disable ``endpoint`` with ``reason``, record ``endpoint.disabled`` and email the tenant's members.

    Returns False (and does nothing) if it was already disabled. ``trigger``
    says why: ``failing`` or ``gone``.
    """
    now = timezone.now()
    with transaction.atomic():
        disabled = Endpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
            enabled=False, disabled_reason=reason[:500], disabled_at=now
        )
        if not disabled:
            return False
        failing_since = (
            Endpoint.objects.filter(pk=endpoint.pk).values_list("failing_since", flat=True).first()
        )
        event_record(
            kind=OperationalEvent.Kind.ENDPOINT_DISABLED,
            tenant_id=endpoint.tenant_id,
            endpoint=endpoint,
            payload={
                **_ids(endpoint),
                "reason": reason,
                "trigger": trigger,
                "disabled_at": iso(now),
                "failing_since": iso(failing_since) if failing_since else None,
            },
        )
        endpoint_pk = endpoint.pk
        transaction.on_commit(lambda: _email_members(endpoint_pk, reason))
    logger.warning(
        "endpoint %s disabled: %s",
        endpoint.uid,
        reason,
        extra={"endpoint": endpoint.uid, "tenant": endpoint.tenant_id, "trigger": trigger},
    )
    return True


def failing_too_long(endpoint: Endpoint, now: datetime) -> bool:
    """Whether ``endpoint`` has failed with no success for the auto-disable window."""
    since = endpoint.failing_since
    window = timedelta(seconds=settings.HOOKPOST_AUTO_DISABLE_AFTER_SECONDS)
    return endpoint.enabled and since is not None and now - since >= window


def auto_disable_reason() -> str:
    seconds = settings.HOOKPOST_AUTO_DISABLE_AFTER_SECONDS
    span = f"{seconds // 86400} days" if seconds >= 86400 and seconds % 86400 == 0 else f"{seconds} seconds"
    return f"Disabled automatically: every attempt failed for {span} with no success."


def message_attempt_exhausted(
    *, delivery: Delivery, attempts: int, status: int | None, last_error: str
) -> OperationalEvent:
    """Record that ``delivery`` is dead after its last scheduled attempt."""
    return event_record(
        kind=OperationalEvent.Kind.MESSAGE_ATTEMPT_EXHAUSTED,
        tenant_id=delivery.tenant_id,
        endpoint=delivery.endpoint,
        payload={
            **_ids(delivery.endpoint),
            "message_id": delivery.message.uid,
            "delivery_id": delivery.uid,
            "event_type": delivery.event_type.name,
            "attempts": attempts,
            "last_status_code": status,
            "last_error": last_error[:500],
        },
    )


def endpoint_recovered(*, endpoint: Endpoint, at: datetime) -> OperationalEvent:
    """Record that the endpoint's circuit closed again after its probe succeeded."""
    return event_record(
        kind=OperationalEvent.Kind.ENDPOINT_RECOVERED,
        tenant_id=endpoint.tenant_id,
        endpoint=endpoint,
        payload={**_ids(endpoint), "recovered_at": iso(at)},
    )


# --- Telling people ---------------------------------------------------------------------


def event_notify(*, event_id: int) -> bool:
    """POST one event to the operator URL; True when done (or nothing to do), False to retry later."""
    url = settings.HOOKPOST_OPERATOR_WEBHOOK_URL
    event = OperationalEvent.objects.filter(pk=event_id, notified_at__isnull=True).first()
    if not url or event is None:
        return True
    body = json.dumps(
        {"type": event.kind, "timestamp": iso(event.created_at), "data": event.payload},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "webhook-id": event.uid,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(
            [settings.HOOKPOST_OPERATOR_WEBHOOK_SECRET], event.uid, timestamp, body
        ),
    }
    result = outbound.transport().send(
        url, headers, body, timeout=float(settings.HOOKPOST_DEFAULT_TIMEOUT_SECONDS)
    )
    if result.ok:
        error = ""
    elif result.error_class:
        error = f"{result.error_class}: {result.error_message}"
    else:
        error = f"HTTP {result.status}"
    OperationalEvent.objects.filter(pk=event.pk).update(
        notify_attempts=F("notify_attempts") + 1,
        notified_at=timezone.now() if result.ok else None,
        notify_error=error[:1000],
    )
    if not result.ok:
        logger.warning("operator webhook for %s failed: %s", event.uid, error, extra={"event": event.uid})
    return result.ok


def _enqueue_notify(event_pk: int) -> None:
    # Imported here: the tasks module imports the engine, which records events.
    from deliveries.tasks import notify_operator

    try:
        notify_operator.delay(event_pk)
    except Exception:  # the broker being down must not fail the work that recorded the event
        logger.exception("could not queue the operator webhook for event %s", event_pk)


def _email_members(endpoint_pk: int, reason: str) -> None:
    """Email each member of the endpoint's tenant (one message each: members do not see each other)."""
    try:
        endpoint = Endpoint.objects.select_related("tenant").get(pk=endpoint_pk)
        emails = sorted(
            set(
                Membership.objects.filter(tenant_id=endpoint.tenant_id)
                .exclude(user__email="")
                .values_list("user__email", flat=True)
            )
        )
        if not emails:
            return
        subject = f"[Hookpost] Endpoint {endpoint.uid} of {endpoint.tenant.uid} was disabled"
        body = (
            f"Your webhook endpoint {_safe_url(endpoint.url)} ({endpoint.uid}) of tenant "
            f"{endpoint.tenant.name} ({endpoint.tenant.uid}) was disabled.\n\n"
            f"Reason: {reason}\n\n"
            "New messages for it are kept as skipped deliveries. Once the receiver works again, "
            "enable the endpoint and recover its skipped and failed deliveries (POST "
            f"/api/v1/tenants/{endpoint.tenant.uid}/endpoints/{endpoint.uid}/recover/, or the admin).\n"
        )
        sent = send_mass_mail([(subject, body, None, [email]) for email in emails], fail_silently=False)
        logger.info("emailed %d members about %s", sent, endpoint.uid, extra={"endpoint": endpoint.uid})
    except Exception:  # mail trouble must never fail delivery work
        logger.exception("could not email the members about endpoint %s", endpoint_pk)


# --- Helpers -------------------------------------------------------------------------------


def _ids(endpoint: Endpoint) -> dict[str, str]:
    tenant_uid = Tenant.objects.filter(pk=endpoint.tenant_id).values_list("uid", flat=True).first() or ""
    return {"tenant": tenant_uid, "endpoint_id": endpoint.uid}


def _safe_url(url: str) -> str:
    """The URL without credentials (``user:password@``) or query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
