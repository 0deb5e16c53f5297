from __future__ import annotations

import pytest

from deliveries.models import Delivery, Message
from tests.factories import EndpointFactory


@pytest.mark.django_db
def test_publish_creates_message_and_delivery(api, tenant, event_type):
    EndpointFactory.create(tenant=tenant)

    response = api.post(
        "/api/v1/tenants/acme/messages/",
        {"event_type": "invoice.paid", "payload": {"amount": 1}},
        format="json",
    )

    assert response.status_code == 202, response.json()
    assert response.json()["deliveries"] == 1
    assert Message.objects.count() == 1
    assert Delivery.objects.get().status == Delivery.Status.PENDING
