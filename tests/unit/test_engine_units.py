"""Pieces of the engine that need no network: redaction and the signed body."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import standardwebhooks

from deliveries.engine import REDACTED, build_request, redact_headers
from deliveries.services import NewMessage, message_publish
from tests.factories import EndpointFactory, EventTypeFactory, TenantFactory
from webhooks.selectors import endpoint_signing_secrets


def test_redaction_hides_signatures_and_credentials():
    headers = {
        "webhook-signature": "v1,abc v1,def",
        "Authorization": "Bearer secret",
        "X-Api-Key": "k",
        "X-Session-Token": "t",
        "X-Tenant": "acme",
    }

    recorded = redact_headers(headers)

    assert recorded["webhook-signature"] == f"v1,{REDACTED} v1,{REDACTED}"
    assert recorded["Authorization"] == recorded["X-Api-Key"] == recorded["X-Session-Token"] == REDACTED
    assert recorded["X-Tenant"] == "acme"


@pytest.mark.django_db
def test_request_body_is_the_envelope_and_is_signed_as_sent():
    tenant = TenantFactory()
    event_type = EventTypeFactory(name="order.created")
    endpoint = EndpointFactory(tenant=tenant, headers={"X-Custom": "1"})
    published = message_publish(
        tenant=tenant, new=NewMessage(event_type="order.created", payload={"id": 7, "name": "Zoë"})
    )
    delivery = published.message.deliveries.get()

    request = build_request(delivery, endpoint, timestamp=1_700_000_000)
    again = build_request(delivery, endpoint, timestamp=1_700_000_000)

    body = json.loads(request.body)
    assert body == {
        "type": event_type.name,
        "timestamp": published.message.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data": {"id": 7, "name": "Zoë"},
    }
    assert request.body == again.body  # the same bytes on every attempt
    assert request.headers["webhook-id"] == published.message.uid
    assert request.headers["X-Custom"] == "1"
    (secret,) = endpoint_signing_secrets(endpoint=endpoint)
    # The reference library signs the same id, timestamp and bytes identically
    # (its verify() would reject the fixed, old timestamp, so compare signatures).
    expected = standardwebhooks.Webhook(secret).sign(
        published.message.uid, datetime.fromtimestamp(1_700_000_000, tz=UTC), request.body.decode()
    )
    assert request.headers["webhook-signature"] == expected
