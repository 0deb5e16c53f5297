"""Pieces of the engine that need no network: redaction, the signed body, and
recording a reply the database would refuse."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import standardwebhooks

from deliveries import engine, outbound
from deliveries.models import Attempt, Delivery
from deliveries.outbound import REDACTED, build_request, redact_headers
from deliveries.services import NewMessage, message_publish
from deliveries.transport import TransportResult
from tests.factories import EndpointFactory, EventTypeFactory, TenantFactory
from tests.unit.protection_helpers import leased_batch
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
    tenant = TenantFactory.create()
    event_type = EventTypeFactory.create(name="order.created")
    endpoint = EndpointFactory.create(tenant=tenant, headers={"X-Custom": "1"})
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


# --- Recording what came back -------------------------------------------------------


class _Answering:
    """A transport stub whose results skip the real transport's normalisation:
    replies as unstorable as a future hole in it could let through."""

    def __init__(self, *results: TransportResult) -> None:
        self.results = list(results)
        self.sent = 0

    async def post(self, *args: Any, **kwargs: Any) -> TransportResult:
        self.sent += 1
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]


UNSTORABLE = [{"x-note": "a\x00b"}, {"x-half": "\udcff"}]


@pytest.mark.django_db
@pytest.mark.parametrize("headers", UNSTORABLE, ids=["nul", "surrogate"])
@pytest.mark.parametrize(("status", "outcome"), [(200, "succeeded"), (500, "failed")])
def test_a_reply_the_database_refuses_is_recorded_without_it_and_not_charged(
    monkeypatch, headers, status, outcome
):
    # given a receiver whose answer cannot be stored as it is
    transport = _Answering(TransportResult(status=status, headers=headers, body=b"x", connected=True))
    monkeypatch.setattr(outbound, "transport", lambda: transport)
    (delivery,), token = leased_batch(EndpointFactory.create(retry_schedule=[60]), 1)

    # when the engine runs it
    statuses = engine.delivery_run_batch(delivery_ids=[delivery.pk], token=token)

    # then its status decided the delivery, once, with an attempt row saying what is missing
    delivery.refresh_from_db()
    assert statuses == {delivery.pk: outcome} and transport.sent == 1
    assert (delivery.status, delivery.attempt_count, delivery.internal_failures) == (outcome, 1, 0)
    (attempt,) = Attempt.objects.filter(delivery=delivery)
    assert (attempt.response_status, attempt.response_headers, attempt.response_body) == (status, {}, "")
    assert "the reply could not be stored" in attempt.error_message


@pytest.mark.django_db
@pytest.mark.parametrize("headers", UNSTORABLE, ids=["nul", "surrogate"])
def test_one_unstorable_reply_in_a_batch_costs_the_others_nothing(monkeypatch, headers):
    # given a batch of three whose second reply cannot be stored as it is
    fine = TransportResult(status=200, headers={"x-ok": "1"}, body=b"fine", connected=True)
    bad = TransportResult(status=200, headers=headers, body=b"bad", connected=True)
    transport = _Answering(fine, bad, fine)
    monkeypatch.setattr(outbound, "transport", lambda: transport)
    deliveries, token = leased_batch(EndpointFactory.create(), 3)

    # when the engine runs the batch
    statuses = engine.delivery_run_batch(delivery_ids=[d.pk for d in deliveries], token=token)

    # then all three succeeded with one request each; two replies stored whole, one without
    assert statuses == {d.pk: "succeeded" for d in deliveries} and transport.sent == 3
    attempts = [Attempt.objects.get(delivery=d) for d in deliveries]
    assert [a.response_body for a in attempts] == ["fine", "", "fine"]
    assert [a.response_headers for a in attempts] == [{"x-ok": "1"}, {}, {"x-ok": "1"}]
    assert Delivery.objects.filter(pk__in=[d.pk for d in deliveries], internal_failures=0).count() == 3


@pytest.mark.django_db
def test_a_stored_header_http_cannot_carry_is_a_recorded_refusal_not_an_internal_error(settings):
    # given an endpoint row from before the header rules, with a value beyond Latin-1
    settings.HOOKPOST_ALLOWED_TARGET_NETWORKS = ["127.0.0.0/8"]
    endpoint = EndpointFactory.create(
        url="http://127.0.0.1:9/hook", retry_schedule=[60], headers={"X-Emoji": "😀"}
    )
    (delivery,), token = leased_batch(endpoint, 1)

    # when the engine runs it through the real transport
    statuses = engine.delivery_run_batch(delivery_ids=[delivery.pk], token=token)

    # then nothing was sent; the attempt says why, and a retry waits for the tenant's fix
    delivery.refresh_from_db()
    assert statuses == {delivery.pk: "failed"}
    assert (delivery.attempt_count, delivery.internal_failures) == (1, 0)
    assert delivery.last_error.startswith(
        "HeaderRejected: refused request: the value of the header 'X-Emoji'"
    )
    (attempt,) = Attempt.objects.filter(delivery=delivery)
    assert (attempt.response_status, attempt.error_class) == (None, "HeaderRejected")
