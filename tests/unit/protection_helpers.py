"""Shared steps of the endpoint-protection unit tests: run the real engine in
process against the real Redis and PostgreSQL, with a scripted transport."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.utils import timezone

from deliveries import breaker, engine, leases
from deliveries.models import Delivery
from deliveries.transport import TransportResult
from tests.factories import DeliveryFactory, MessageFactory
from webhooks.models import Endpoint


class ScriptedTransport:
    """Answers each send with the next status of its script (the last repeats); records URLs."""

    def __init__(self, *statuses: int | None) -> None:
        self.statuses = list(statuses) or [200]
        self.sent: list[str] = []

    async def post(self, url: str, headers: Any, body: bytes, timeout: float, **kw: Any) -> TransportResult:
        return self.send(url, headers, body, timeout, **kw)

    def send(self, url: str, headers: Any, body: bytes, timeout: float, **kwargs: Any) -> TransportResult:
        self.sent.append(url)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status is None:
            return TransportResult(status=None, error_class="ConnectionError", error_message="refused")
        return TransportResult(status=status, body=b"", duration_ms=1, connected=True)


def dispatch(delivery: Delivery) -> str:
    """What the scheduler does: make the delivery due now and lease it to one task."""
    token = leases.new_token()
    Delivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now(),
        lease_token=token,
        lease_expires_at=timezone.now() + timedelta(seconds=120),
    )
    return token


def leased_batch(endpoint: Endpoint, count: int) -> tuple[list[Delivery], str]:
    """``count`` new deliveries to ``endpoint``, due now and leased to one task (what dispatch does)."""
    token = leases.new_token()
    deliveries = [
        DeliveryFactory.create(
            endpoint=endpoint,
            tenant=endpoint.tenant,
            message=MessageFactory.create(tenant=endpoint.tenant),
            next_attempt_at=timezone.now(),
            lease_token=token,
            lease_expires_at=timezone.now() + timedelta(seconds=120),
        )
        for _ in range(count)
    ]
    return deliveries, token


def run(delivery: Delivery) -> str | None:
    """Dispatch and run one attempt of ``delivery`` through the real engine."""
    return engine.delivery_run(delivery_id=delivery.pk, token=dispatch(delivery))


def open_circuit(endpoint: Endpoint, failures: int = 5) -> breaker.Transition | None:
    """Count ``failures`` breaker-failures for the endpoint; return the last transition."""
    transition = None
    for _ in range(failures):
        transition = breaker.record(endpoint, breaker.Outcome.FAILURE) or transition
    return transition


def states(transitions: Iterable[breaker.Transition | None]) -> list[tuple[str, str]]:
    return [(t.from_state, t.to_state) for t in transitions if t is not None]
