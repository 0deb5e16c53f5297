"""/api/v1/tenants/{uid}/deliveries/: delivery history with filters, and attempts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deliveries.models import Attempt, Delivery
from tests.api.helpers import assert_error
from tests.factories import DeliveryFactory, EndpointFactory, EventTypeFactory, MessageFactory

BASE = "/api/v1/tenants/acme/deliveries/"


def test_lists_the_tenants_deliveries_newest_first(api, tenant, other_tenant, event_type):
    # given two deliveries of acme and one of globex
    now = timezone.now()
    acme = {"message__tenant": tenant, "message__event_type": event_type}
    old = DeliveryFactory.create(**acme, created_at=now - timedelta(days=1))
    new = DeliveryFactory.create(**acme, created_at=now)
    DeliveryFactory.create(message__tenant=other_tenant, message__event_type=event_type)

    # when acme lists its deliveries
    response = api.get(BASE)

    # then it sees its two, newest first, with their message, endpoint and type
    assert response.status_code == 200
    body = response.json()
    assert [d["id"] for d in body["data"]] == [new.uid, old.uid]
    assert body["next"] is None
    first = body["data"][0]
    assert first["id"].startswith("dlv_")
    assert (first["message"], first["endpoint"], first["event_type"], first["status"]) == (
        new.message.uid,
        new.endpoint.uid,
        "invoice.paid",
        "pending",
    )
    assert "attempts" not in first


@pytest.fixture
def history(tenant, event_type):
    """Deliveries of acme across endpoints, types, messages, statuses and times."""
    now = timezone.now()
    other_type = EventTypeFactory.create(name="user.created")
    ep1, ep2 = EndpointFactory.create(tenant=tenant), EndpointFactory.create(tenant=tenant)
    m1 = MessageFactory.create(tenant=tenant, event_type=event_type, created_at=now - timedelta(hours=3))
    m2 = MessageFactory.create(tenant=tenant, event_type=other_type, created_at=now - timedelta(hours=2))

    def make(message, endpoint, status, hours_ago):
        return DeliveryFactory.create(
            message=message, endpoint=endpoint, status=status, created_at=now - timedelta(hours=hours_ago)
        )

    return {
        "now": now,
        "ep1": ep1,
        "ep2": ep2,
        "m1": m1,
        "m2": m2,
        "a": make(m1, ep1, Delivery.Status.SUCCEEDED, 3),
        "b": make(m1, ep2, Delivery.Status.DEAD, 3),
        "c": make(m2, ep1, Delivery.Status.FAILED, 2),
        "d": make(m2, ep2, Delivery.Status.SKIPPED, 1),
    }


def _ids(api, **params):
    response = api.get(BASE, params)
    assert response.status_code == 200, response.json()
    return {d["id"] for d in response.json()["data"]}


def test_delivery_list_filters(api, history):
    h = history

    def uids(*names):
        return {h[name].uid for name in names}

    assert _ids(api) == uids("a", "b", "c", "d")
    assert _ids(api, status="dead") == uids("b")
    assert _ids(api, status="failed") == uids("c")
    assert _ids(api, status="skipped") == uids("d")
    assert _ids(api, status="succeeded") == uids("a")
    assert _ids(api, status="pending") == set()
    assert _ids(api, endpoint=h["ep1"].uid) == uids("a", "c")
    assert _ids(api, event_type="user.created") == uids("c", "d")
    assert _ids(api, message=h["m1"].uid) == uids("a", "b")
    cut = (h["now"] - timedelta(minutes=150)).isoformat()
    assert _ids(api, after=cut) == uids("c", "d")
    assert _ids(api, before=cut) == uids("a", "b")
    assert _ids(api, endpoint=h["ep2"].uid, after=cut) == uids("d")
    assert _ids(api, endpoint=h["ep2"].uid, status="dead", message=h["m1"].uid) == uids("b")
    assert _ids(api, endpoint="ep_unknown") == set()
    assert _ids(api, message="msg_unknown") == set()


@pytest.mark.parametrize(
    "params",
    [{"status": "exploded"}, {"status": "PENDING"}, {"after": "last week"}, {"before": "2024-02-30"}],
)
def test_a_bad_delivery_filter_is_422_naming_it(api, tenant, params):
    response = api.get(BASE, params)

    assert set(assert_error(response, 422, "validation_error")) == set(params)


def test_delivery_detail_shows_its_attempts_in_order(api, world):
    # given the delivery has a second attempt, recorded after the first
    second = Attempt.objects.create(
        delivery=world.delivery, number=2, trigger=Attempt.Trigger.REPLAY, response_status=200, duration_ms=5
    )

    # when acme reads the delivery
    response = api.get(f"{BASE}{world.delivery.uid}/")

    # then it has both attempts, by number, with what was sent and got back
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["message"], body["endpoint"]) == (
        world.delivery.uid,
        world.message.uid,
        world.endpoint.uid,
    )
    assert [a["id"] for a in body["attempts"]] == [world.attempt.uid, second.uid]
    first = body["attempts"][0]
    assert (first["number"], first["trigger"], first["response_status"], first["duration_ms"]) == (
        1,
        "scheduled",
        500,
        12,
    )
    assert first["request_headers"] == {"webhook-id": world.message.uid}
    assert (first["response_body"], first["error_class"]) == ("oops", "HTTPStatus")
    assert body["attempts"][1]["trigger"] == "replay"


def test_an_unknown_delivery_is_404(api, tenant):
    assert_error(api.get(f"{BASE}dlv_unknown/"), 404, "not_found")
