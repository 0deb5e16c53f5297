"""``GET /api/v1/tenants/{uid}/endpoints/{id}/health/``: the circuit (live from
Redis), the run of failures, the last 24 hours of attempts, the disabled reason.
Auth and tenant isolation are walked with every other route (tests/api/helpers.ROUTES)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from deliveries.models import Attempt
from tests.factories import DeliveryFactory, EndpointFactory
from tests.unit.protection_helpers import open_circuit
from webhooks.models import Endpoint


def _health(api, endpoint: Endpoint) -> dict[str, Any]:
    response = api.get(f"/api/v1/tenants/{endpoint.tenant.uid}/endpoints/{endpoint.uid}/health/")
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def test_a_new_endpoint_is_closed_with_no_attempts(api, tenant):
    endpoint = EndpointFactory.create(tenant=tenant)

    body = _health(api, endpoint)

    assert body == {
        "id": endpoint.uid,
        "enabled": True,
        "disabled_reason": "",
        "disabled_at": None,
        "circuit_state": "closed",
        "circuit_changed_at": None,
        "circuit_retry_at": None,
        "circuit_cooldown_seconds": None,
        "consecutive_failures": 0,
        "failing_since": None,
        "last_success_at": None,
        "last_failure_at": None,
        "attempts_24h": 0,
        "succeeded_24h": 0,
        "failed_24h": 0,
        "success_rate_24h": None,
    }


def test_an_open_circuit_and_the_last_24_hours_are_shown(api, tenant):
    # given an endpoint with 3 successes and 1 failure today, 5 failures 2 days ago,
    # and a circuit that just opened
    endpoint = EndpointFactory.create(tenant=tenant)
    delivery = DeliveryFactory.create(endpoint=endpoint, tenant=tenant, message__tenant=tenant)
    now = timezone.now()
    statuses = [(200, 1), (200, 2), (204, 3), (500, 4)] + [(500, 48 + n) for n in range(5)]
    for number, (status, hours_ago) in enumerate(statuses, start=1):
        Attempt.objects.create(
            delivery=delivery,
            number=number,
            response_status=status,
            started_at=now - timedelta(hours=hours_ago),
        )
    Endpoint.objects.filter(pk=endpoint.pk).update(
        consecutive_failures=5, failing_since=now - timedelta(minutes=3)
    )
    opened = open_circuit(endpoint)
    assert opened is not None

    body = _health(api, endpoint)

    assert body["circuit_state"] == "open"
    assert body["circuit_cooldown_seconds"] == 30.0
    assert body["circuit_changed_at"] is not None and body["circuit_retry_at"] > body["circuit_changed_at"]
    assert body["consecutive_failures"] == 5 and body["failing_since"] is not None
    assert (body["attempts_24h"], body["succeeded_24h"], body["failed_24h"]) == (4, 3, 1)
    assert body["success_rate_24h"] == 0.75


def test_a_disabled_endpoint_shows_why(api, tenant):
    endpoint = EndpointFactory.create(
        tenant=tenant, enabled=False, disabled_reason="The receiver answered 410 Gone."
    )
    Endpoint.objects.filter(pk=endpoint.pk).update(disabled_at=timezone.now())

    body = _health(api, endpoint)

    assert body["enabled"] is False
    assert body["disabled_reason"] == "The receiver answered 410 Gone."
    assert body["disabled_at"] is not None


def test_without_redis_the_mirror_on_the_endpoint_is_shown(api, tenant, settings):
    endpoint = EndpointFactory.create(tenant=tenant, circuit_state="open", circuit_changed_at=timezone.now())
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    body = _health(api, endpoint)

    assert body["circuit_state"] == "open" and body["circuit_changed_at"] is not None
