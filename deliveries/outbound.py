"""Outbound requests: the exact signed bytes and headers of an attempt, their
redaction for the record, and the process-wide transport that sends them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from deliveries.leases import timeout_of
from deliveries.models import Delivery
from deliveries.transport import Transport
from webhooks import signing
from webhooks.models import Endpoint
from webhooks.selectors import endpoint_signing_secrets

# Header names whose values are secrets and never stored in attempt records.
_SENSITIVE_HEADER_PARTS = ("authorization", "token", "secret", "key", "cookie", "signature", "password")
REDACTED = "[redacted]"

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


def build_request(
    delivery: Delivery, endpoint: Endpoint, timestamp: int, secrets: list[str] | None = None
) -> OutboundRequest:
    """The exact bytes and headers of one attempt (the body is the same on every attempt).

    ``secrets`` are the endpoint's signing secrets when the caller already
    loaded them (once per batch); otherwise they are read here.
    """
    message = delivery.message
    body = json.dumps(
        {"type": delivery.event_type.name, "timestamp": iso(message.created_at), "data": message.payload},
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
    return OutboundRequest(url=endpoint.url, headers=headers, body=body, timeout=float(timeout_of(endpoint)))


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


def iso(moment: datetime) -> str:
    """``2026-11-23T12:00:00.000000Z`` (isoformat: a third of strftime's cost)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"
