"""A published message reaches a real receiver, signed, through a real worker."""

from __future__ import annotations

import json

import pytest
import standardwebhooks
import svix.webhooks

from deliveries.models import Attempt, Delivery
from tests.e2e.receiver import Receiver, Reply

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_published_message_arrives_signed_and_verifies(
    worker, receiver: Receiver, e2e_settings, make_client, tenant, event_type
):
    client = make_client(tenant).client
    url = receiver.script("/hook", Reply(200))
    created = client.post(f"/api/v1/tenants/{tenant.uid}/endpoints/", {"url": url}, format="json")
    assert created.status_code == 201, created.json()
    secret = created.json()["secret"]

    response = client.post(
        f"/api/v1/tenants/{tenant.uid}/messages/",
        {"event_type": event_type.name, "payload": {"amount": 42}},
        format="json",
    )
    assert response.status_code == 202

    (got,) = receiver.wait_for(1, "/hook")
    assert got.headers["webhook-id"] == response.json()["id"]
    standardwebhooks.Webhook(secret).verify(got.body, got.headers)
    svix.webhooks.Webhook(secret).verify(got.body, got.headers)
    body = json.loads(got.body)
    assert body["type"] == event_type.name and body["data"] == {"amount": 42}
    delivery = _wait_status(Delivery.Status.SUCCEEDED)
    assert Attempt.objects.get(delivery=delivery).response_status == 200


def _wait_status(status: str, timeout: float = 10.0) -> Delivery:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivery = Delivery.objects.first()
        if delivery and delivery.status == status:
            return delivery
        time.sleep(0.05)
    raise AssertionError(f"delivery is {Delivery.objects.first().status}, not {status}")
