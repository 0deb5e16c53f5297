"""Secret rotation end to end: during the grace period a delivered request
verifies with the old secret and with the new one, in both the
``standardwebhooks`` and the ``svix`` receiver libraries."""

from __future__ import annotations

import pytest
import standardwebhooks
import svix.webhooks

from tests.e2e.helpers import assert_ledger, publish, register_endpoint
from tests.e2e.receiver import Receiver, Reply
from webhooks import signing

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_after_rotation_a_delivery_verifies_with_the_old_and_the_new_secret(
    worker, receiver: Receiver, e2e_settings, make_client, tenant, event_type
):
    # Given an endpoint whose secret was rotated with a grace period
    api = make_client(tenant).client
    receiver.script("/hook", Reply(200))
    endpoint = register_endpoint(api, tenant, receiver, "/hook")
    old_secret = endpoint.secret
    rotated = api.post(
        f"/api/v1/tenants/{tenant.uid}/endpoints/{endpoint.uid}/rotate-secret/",
        {"grace_seconds": 3600},
        format="json",
    )
    assert rotated.status_code == 200, rotated.json()
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != old_secret

    # When a message is published
    message_id = publish(api, tenant, event_type, {"amount": 7})

    # Then the request the receiver got carries one signature per valid secret
    (got,) = receiver.wait_for(1, "/hook")
    assert got.headers["webhook-id"] == message_id
    signatures = got.headers["webhook-signature"].split()
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    # ... and verifies with either secret, in both libraries
    for secret in (old_secret, new_secret):
        standardwebhooks.Webhook(secret).verify(got.body, got.headers)
        svix.webhooks.Webhook(secret).verify(got.body, got.headers)
    # ... while a secret that never belonged to the endpoint does not verify
    stranger = signing.generate_secret()
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(stranger).verify(got.body, got.headers)
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(stranger).verify(got.body, got.headers)
    assert_ledger(receiver, [message_id], [endpoint])
