"""Automatic disabling and operational events, through the real engine (in
process, scripted transport): an endpoint failing with no success for the
window is disabled with its reason, its tenant's members are emailed, an
``endpoint.disabled`` event is written; new messages for it are skipped;
re-enabling resets its breaker and failure window, and recovering replays
what it missed. Plus ``message.attempt.exhausted`` and the signed operator
webhook, posted to a real receiver."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import standardwebhooks
from django.contrib.auth import get_user_model
from django.utils import timezone

from deliveries import breaker, operational, outbound
from deliveries.models import Delivery, OperationalEvent
from deliveries.services import NewMessage, message_publish
from tests.e2e.receiver import Receiver
from tests.factories import EndpointFactory, TenantFactory
from tests.unit.protection_helpers import ScriptedTransport, open_circuit, run
from webhooks import signing
from webhooks.models import Endpoint, Membership, Tenant

pytestmark = pytest.mark.django_db

WINDOW = 60


@pytest.fixture
def window(settings):
    settings.HOOKPOST_AUTO_DISABLE_AFTER_SECONDS = WINDOW
    return settings


@pytest.fixture
def transport(monkeypatch) -> ScriptedTransport:
    scripted = ScriptedTransport(500)
    monkeypatch.setattr(outbound, "transport", lambda: scripted)
    return scripted


def _member(tenant: Tenant, email: str) -> None:
    user = get_user_model().objects.create_user(username=email or f"user-{tenant.uid}", email=email)
    Membership.objects.create(user=user, tenant=tenant)


def _publish(tenant: Tenant, event_type: Any, endpoint: Endpoint) -> Delivery:
    published = message_publish(tenant=tenant, new=NewMessage(event_type=event_type.name, payload={"n": 1}))
    return Delivery.objects.get(message=published.message, endpoint=endpoint)


def _failing_for(endpoint: Endpoint, seconds: float) -> None:
    Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(seconds=seconds))


def test_an_endpoint_failing_for_the_whole_window_is_disabled_told_and_recoverable(
    window, transport, api, tenant, event_type, mailoutbox, django_capture_on_commit_callbacks
):
    # given a tenant with two members who have emails (and one without), another
    # tenant's member, and an endpoint whose receiver answers 500
    _member(tenant, "alice@acme.test")
    _member(tenant, "bob@acme.test")
    _member(tenant, "")
    _member(TenantFactory.create(uid="globex"), "carol@globex.test")
    endpoint = EndpointFactory.create(
        tenant=tenant, retry_schedule=[1] * 10, url="https://user:pw@hooks.acme.test/in?t=1"
    )
    delivery = _publish(tenant, event_type, endpoint)
    assert run(delivery) == "failed"
    assert Endpoint.objects.get(pk=endpoint.pk).failing_since is not None

    # when it has been failing for the whole window and fails again
    _failing_for(endpoint, WINDOW + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert run(delivery) == "failed"

    # then it is disabled with its reason
    row = Endpoint.objects.get(pk=endpoint.pk)
    assert not row.enabled and row.disabled_at is not None
    assert (
        row.disabled_reason == "Disabled automatically: every attempt failed for 60 seconds with no success."
    )
    # and an endpoint.disabled event was recorded
    event = OperationalEvent.objects.get(kind="endpoint.disabled")
    assert (event.tenant_id, event.endpoint_id) == (tenant.pk, endpoint.pk)
    assert event.payload["endpoint_id"] == endpoint.uid and event.payload["trigger"] == "failing"
    assert event.payload["tenant"] == "acme" and event.payload["failing_since"]
    # and each member of the tenant got an email of their own, without credentials or secrets
    assert sorted(m.to[0] for m in mailoutbox) == ["alice@acme.test", "bob@acme.test"]
    assert all(len(m.to) == 1 for m in mailoutbox)
    mail = mailoutbox[0]
    assert endpoint.uid in mail.subject and row.disabled_reason in mail.body
    assert "https://hooks.acme.test/in" in mail.body and "pw" not in mail.body and "whsec_" not in mail.body

    # when new messages arrive for it, they are kept as skipped
    later = _publish(tenant, event_type, endpoint)
    assert later.status == Delivery.Status.SKIPPED
    # and the retry of the failed delivery is skipped too when its time comes
    assert run(delivery) == Delivery.Status.SKIPPED

    # when the tenant re-enables it (its breaker had opened meanwhile)
    open_circuit(endpoint)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.patch(
            f"/api/v1/tenants/acme/endpoints/{endpoint.uid}/", {"enabled": True}, format="json"
        )
    assert response.status_code == 200, response.json()

    # then its breaker and failure window start afresh
    row = Endpoint.objects.get(pk=endpoint.pk)
    assert row.enabled and row.disabled_reason == "" and row.failing_since is None
    assert (row.circuit_state, row.consecutive_failures) == ("closed", 0)
    assert breaker.snapshot(endpoint).state == "closed"

    # and recovering replays what it missed, which now arrives
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    response = api.post(
        f"/api/v1/tenants/acme/endpoints/{endpoint.uid}/recover/", {"since": since}, format="json"
    )
    assert response.status_code == 202 and response.json()["replayed"] == 2
    transport.statuses = [200]
    assert [run(d) for d in (delivery, later)] == ["succeeded", "succeeded"]
    assert Endpoint.objects.get(pk=endpoint.pk).failing_since is None


def test_failing_for_less_than_the_window_leaves_the_endpoint_enabled(window, transport, tenant, event_type):
    endpoint = EndpointFactory.create(tenant=tenant, retry_schedule=[1] * 10)
    delivery = _publish(tenant, event_type, endpoint)
    run(delivery)
    _failing_for(endpoint, WINDOW - 5)

    run(delivery)

    assert Endpoint.objects.get(pk=endpoint.pk).enabled
    assert not OperationalEvent.objects.exists()


def test_a_success_ends_the_run_of_failures(window, transport, tenant, event_type):
    endpoint = EndpointFactory.create(tenant=tenant, retry_schedule=[1] * 10)
    delivery = _publish(tenant, event_type, endpoint)
    run(delivery)
    _failing_for(endpoint, WINDOW - 5)
    transport.statuses = [200]

    run(delivery)

    row = Endpoint.objects.get(pk=endpoint.pk)
    assert (row.failing_since, row.consecutive_failures, row.enabled) == (None, 0, True)


def test_410_gone_disables_the_endpoint_with_notice(
    transport, tenant, event_type, mailoutbox, django_capture_on_commit_callbacks
):
    _member(tenant, "alice@acme.test")
    endpoint = EndpointFactory.create(tenant=tenant)
    transport.statuses = [410]

    with django_capture_on_commit_callbacks(execute=True):
        assert run(_publish(tenant, event_type, endpoint)) == Delivery.Status.DEAD

    row = Endpoint.objects.get(pk=endpoint.pk)
    assert not row.enabled and row.disabled_reason == "The receiver answered 410 Gone."
    assert OperationalEvent.objects.get(kind="endpoint.disabled").payload["trigger"] == "gone"
    assert [m.to for m in mailoutbox] == [["alice@acme.test"]]


def test_exhausted_retries_record_message_attempt_exhausted(transport, tenant, event_type):
    endpoint = EndpointFactory.create(tenant=tenant, retry_schedule=[1])
    delivery = _publish(tenant, event_type, endpoint)

    assert [run(delivery), run(delivery)] == ["failed", "dead"]

    event = OperationalEvent.objects.get(kind="message.attempt.exhausted")
    assert event.endpoint_id == endpoint.pk
    assert event.payload["message_id"] == delivery.message.uid
    assert event.payload["delivery_id"] == delivery.uid
    assert (event.payload["attempts"], event.payload["last_status_code"]) == (2, 500)


@pytest.fixture
def operator_receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def test_events_are_posted_signed_to_the_operator_webhook(
    settings, operator_receiver, tenant, django_capture_on_commit_callbacks, monkeypatch
):
    # given an operator webhook on a real receiver
    secret = signing.generate_secret()
    settings.HOOKPOST_OPERATOR_WEBHOOK_URL = operator_receiver.url("/ops")
    settings.HOOKPOST_OPERATOR_WEBHOOK_SECRET = secret
    settings.HOOKPOST_ALLOWED_TARGET_NETWORKS = ["127.0.0.0/8"]
    queued: list[int] = []
    monkeypatch.setattr(operational, "_enqueue_notify", queued.append)  # the task's body runs below
    endpoint = EndpointFactory.create(tenant=tenant)

    # when an event is recorded and its notification runs
    with django_capture_on_commit_callbacks(execute=True):
        event = operational.endpoint_recovered(endpoint=endpoint, at=timezone.now())
    assert queued == [event.pk]
    assert operational.event_notify(event_id=event.pk)

    # then the operator URL got it, signed: it verifies with the standardwebhooks package
    (request,) = operator_receiver.received("/ops")
    payload = standardwebhooks.Webhook(secret).verify(request.body.decode(), request.headers)
    assert payload["type"] == "endpoint.recovered"
    assert payload["data"]["endpoint_id"] == endpoint.uid
    assert request.headers["webhook-id"] == event.uid
    row = OperationalEvent.objects.get(pk=event.pk)
    assert row.notified_at is not None and row.notify_attempts == 1
    # and it is sent once only
    assert operational.event_notify(event_id=event.pk)
    assert len(operator_receiver.received("/ops")) == 1


def test_a_failed_operator_post_is_kept_for_a_retry(settings, operator_receiver, tenant):
    from tests.e2e.receiver import Reply

    settings.HOOKPOST_OPERATOR_WEBHOOK_URL = operator_receiver.script("/ops", Reply(503))
    settings.HOOKPOST_OPERATOR_WEBHOOK_SECRET = signing.generate_secret()
    settings.HOOKPOST_ALLOWED_TARGET_NETWORKS = ["127.0.0.0/8"]
    event = operational.endpoint_recovered(endpoint=EndpointFactory.create(tenant=tenant), at=timezone.now())

    assert not operational.event_notify(event_id=event.pk)

    row = OperationalEvent.objects.get(pk=event.pk)
    assert (row.notified_at, row.notify_attempts, row.notify_error) == (None, 1, "HTTP 503")
