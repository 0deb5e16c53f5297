"""/api/v1/tenants/{uid}/messages/: publish (single and batch), idempotency,
fan-out, the ingest transaction, and the message history."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries import tasks
from deliveries.models import Delivery, Message
from tests.api.helpers import assert_error, counts, snapshot
from tests.factories import EndpointFactory, EventTypeFactory, MessageFactory
from webhooks.models import EventType

BASE = "/api/v1/tenants/acme/messages/"
BATCH = f"{BASE}batch/"
PAID = {"event_type": "invoice.paid", "payload": {"amount": 100}}
INVOICE_SCHEMA = {
    "type": "object",
    "properties": {"amount": {"type": "integer"}, "currency": {"enum": ["EUR", "USD"]}},
    "required": ["amount"],
}


@pytest.fixture
def handed_over(monkeypatch):
    """Record what ingest hands to the delivery engine (instead of queueing)."""
    calls: list[list[int]] = []
    monkeypatch.setattr(tasks, "enqueue_fresh", lambda ids, *lease: calls.append(list(ids)))
    return calls


# --- publish ---------------------------------------------------------------------------


def test_publishing_stores_the_message_and_a_pending_delivery(api, tenant, event_type):
    # given an endpoint of acme
    endpoint = EndpointFactory.create(tenant=tenant)

    # when acme publishes invoice.paid
    response = api.post(BASE, PAID, format="json")

    # then 202 with the message's id, and message and delivery are in PostgreSQL
    assert response.status_code == 202, response.json()
    body = response.json()
    assert set(body) == {"id", "event_type", "created_at", "deliveries"}
    assert body["id"].startswith("msg_")
    assert (body["event_type"], body["deliveries"]) == ("invoice.paid", 1)
    message = Message.objects.get()
    assert (message.uid, message.tenant, message.event_type, message.payload) == (
        body["id"],
        tenant,
        event_type,
        {"amount": 100},
    )
    delivery = Delivery.objects.get()
    assert (delivery.message, delivery.endpoint, delivery.tenant) == (message, endpoint, tenant)
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.next_attempt_at is not None and delivery.next_attempt_at <= timezone.now()


def test_a_message_with_no_subscribed_endpoint_is_still_stored(api, tenant, event_type):
    response = api.post(BASE, PAID, format="json")

    assert response.status_code == 202
    assert response.json()["deliveries"] == 0
    assert Message.objects.count() == 1 and Delivery.objects.count() == 0


def test_a_payload_matching_the_schema_is_accepted(api, tenant, event_type):
    EventType.objects.filter(pk=event_type.pk).update(schema=INVOICE_SCHEMA)

    response = api.post(
        BASE, {"event_type": "invoice.paid", "payload": {"amount": 5, "currency": "EUR"}}, format="json"
    )

    assert response.status_code == 202, response.json()
    assert Message.objects.get().payload == {"amount": 5, "currency": "EUR"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event_type": "no.such.type", "payload": {}}, "event_type"),
        ({"event_type": "invoice.voided", "payload": {}}, "event_type"),  # archived
        ({"payload": {}}, "event_type"),
        ({"event_type": "invoice.paid"}, "payload"),
        ({"event_type": "invoice.paid", "payload": [1, 2]}, "payload"),
        ({"event_type": "invoice.paid", "payload": "text"}, "payload"),
        ({"event_type": "invoice.paid", "payload": 3}, "payload"),
        ({"event_type": "invoice.paid", "payload": None}, "payload"),
        ({"event_type": "invoice.paid", "payload": {}, "id": "has spaces"}, "id"),
        ({"event_type": "invoice.paid", "payload": {}, "id": "x" * 65}, "id"),
        ({"event_type": "invoice.paid", "payload": {}, "id": ""}, "id"),
        ({"event_type": ["invoice.paid"], "payload": {}}, "event_type"),
    ],
)
def test_an_invalid_message_is_422_and_stores_nothing(api, tenant, event_type, body, field):
    # given acme has an endpoint and an archived event type exists
    EndpointFactory.create(tenant=tenant)
    EventTypeFactory.create(name="invoice.voided", archived=True)
    before = snapshot()

    # when acme publishes an invalid message
    response = api.post(BASE, body, format="json")

    # then 422 names the field and nothing is stored
    details = assert_error(response, 422, "validation_error")
    assert details[field], details
    assert snapshot() == before


def test_unknown_and_archived_event_types_are_explained(api, tenant, event_type):
    EventTypeFactory.create(name="invoice.voided", archived=True)

    unknown = api.post(BASE, {"event_type": "no.such", "payload": {}}, format="json")
    archived = api.post(BASE, {"event_type": "invoice.voided", "payload": {}}, format="json")

    assert assert_error(unknown, 422)["event_type"] == ["Unknown event type 'no.such'."]
    assert assert_error(archived, 422)["event_type"] == ["The event type 'invoice.voided' is archived."]
    assert Message.objects.count() == 0


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"amount": "ten"}, "amount: 'ten' is not of type 'integer'"),
        ({}, "(root): 'amount' is a required property"),
        ({"amount": 1, "currency": "GBP"}, "currency: 'GBP' is not one of ['EUR', 'USD']"),
    ],
)
def test_a_payload_against_the_schema_is_422_listing_the_problem(api, tenant, event_type, payload, problem):
    # given invoice.paid has a schema and acme an endpoint
    EventType.objects.filter(pk=event_type.pk).update(schema=INVOICE_SCHEMA)
    EndpointFactory.create(tenant=tenant)
    before = snapshot()

    # when acme publishes a payload that breaks it
    response = api.post(BASE, {"event_type": "invoice.paid", "payload": payload}, format="json")

    # then details["payload"] lists the problem, and nothing is stored
    details = assert_error(response, 422, "validation_error")
    assert details["payload"] == [problem]
    assert snapshot() == before


def test_every_schema_problem_is_listed(api, tenant, event_type):
    EventType.objects.filter(pk=event_type.pk).update(schema=INVOICE_SCHEMA)

    response = api.post(
        BASE, {"event_type": "invoice.paid", "payload": {"amount": "x", "currency": "GBP"}}, format="json"
    )

    assert sorted(assert_error(response, 422)["payload"]) == [
        "amount: 'x' is not of type 'integer'",
        "currency: 'GBP' is not one of ['EUR', 'USD']",
    ]


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "https://example.com/schemas/invoice.json"},
        {"$ref": "#"},
        {"properties": {"amount": {"$ref": "#/$defs/loop"}}, "$defs": {"loop": {"$ref": "#/$defs/loop"}}},
    ],
    ids=["unresolvable", "endless", "endless_below_a_property"],
)
def test_an_unusable_schema_gives_422_not_500(api, tenant, event_type, schema):
    # given invoice.paid carries a schema that cannot be applied (stored before
    # such schemas were refused, or only reached below a property)
    EventType.objects.filter(pk=event_type.pk).update(schema=schema)
    EndpointFactory.create(tenant=tenant)
    before = snapshot()

    # when acme publishes
    response = api.post(BASE, {"event_type": "invoice.paid", "payload": {"amount": 1}}, format="json")

    # then 422 on the payload, and nothing is stored
    assert assert_error(response, 422, "validation_error")["payload"]
    assert snapshot() == before


# --- idempotency -----------------------------------------------------------------------


def test_the_same_idempotency_key_twice_publishes_once(api, tenant, event_type):
    # given two endpoints of acme
    EndpointFactory.create(tenant=tenant)
    EndpointFactory.create(tenant=tenant)

    # when acme publishes the same message twice with one Idempotency-Key
    first = api.post(BASE, PAID, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    second = api.post(BASE, PAID, format="json", HTTP_IDEMPOTENCY_KEY="order-42")

    # then 202, then 200 with the same message; one message and one set of deliveries
    assert first.status_code == 202, first.json()
    assert second.status_code == 200, second.json()
    assert second.json() == first.json()
    assert first.json()["deliveries"] == 2
    message = Message.objects.get()
    assert (message.uid, message.idempotency_key) == (first.json()["id"], "order-42")
    assert Delivery.objects.filter(message=message).count() == 2
    assert Delivery.objects.count() == 2


def test_the_same_message_id_twice_publishes_once(api, tenant, event_type):
    EndpointFactory.create(tenant=tenant)
    body = {**PAID, "id": "invoice-7-paid"}

    first = api.post(BASE, body, format="json")
    second = api.post(BASE, body, format="json")

    assert first.status_code == 202, first.json()
    assert second.status_code == 200, second.json()
    assert first.json()["id"] == second.json()["id"] == "invoice-7-paid"
    assert Message.objects.get().uid == "invoice-7-paid"
    assert Delivery.objects.count() == 1


@pytest.mark.parametrize(
    "changed",
    [
        {"payload": {"amount": 999}},
        {"event_type": "invoice.refunded"},
        {"id": "another-id"},
    ],
    ids=["payload", "event_type", "id"],
)
def test_an_idempotency_key_reused_for_a_different_message_is_409(api, tenant, event_type, changed):
    # given a message published with Idempotency-Key K
    EventTypeFactory.create(name="invoice.refunded")
    EndpointFactory.create(tenant=tenant)
    assert api.post(BASE, PAID, format="json", HTTP_IDEMPOTENCY_KEY="K").status_code == 202
    before = snapshot()

    # when K comes again with different content
    response = api.post(BASE, {**PAID, **changed}, format="json", HTTP_IDEMPOTENCY_KEY="K")

    # then 409 and nothing new
    assert_error(response, 409, "conflict")
    assert snapshot() == before


def test_a_message_id_reused_for_a_different_payload_is_409(api, tenant, event_type):
    EndpointFactory.create(tenant=tenant)
    assert api.post(BASE, {**PAID, "id": "m-1"}, format="json").status_code == 202
    before = snapshot()

    response = api.post(BASE, {**PAID, "id": "m-1", "payload": {"amount": 1}}, format="json")

    assert_error(response, 409, "conflict")
    assert snapshot() == before


def test_idempotency_keys_are_per_tenant(make_client, tenant, other_tenant, event_type):
    # given acme published with key K and message id M
    acme = make_client(tenant).client
    globex = make_client(other_tenant).client
    theirs = acme.post(BASE, {**PAID, "id": "M"}, format="json", HTTP_IDEMPOTENCY_KEY="K")

    # when globex publishes with the same key and id
    mine = globex.post(
        "/api/v1/tenants/globex/messages/", {**PAID, "id": "M"}, format="json", HTTP_IDEMPOTENCY_KEY="K"
    )

    # then globex gets a message of its own, not acme's
    assert (theirs.status_code, mine.status_code) == (202, 202)
    assert set(Message.objects.values_list("tenant__uid", "uid")) == {("acme", "M"), ("globex", "M")}


def test_a_bad_idempotency_key_is_422(api, tenant, event_type):
    response = api.post(BASE, PAID, format="json", HTTP_IDEMPOTENCY_KEY="k" * 256)

    assert assert_error(response, 422, "validation_error")["idempotency_key"]
    assert Message.objects.count() == 0


def test_a_repeat_hands_nothing_new_to_the_engine(
    api, tenant, event_type, handed_over, django_capture_on_commit_callbacks
):
    EndpointFactory.create(tenant=tenant)
    with django_capture_on_commit_callbacks(execute=True):
        api.post(BASE, PAID, format="json", HTTP_IDEMPOTENCY_KEY="K")
    assert len(handed_over) == 1

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post(BASE, PAID, format="json", HTTP_IDEMPOTENCY_KEY="K")

    assert response.status_code == 200
    assert callbacks == []
    assert len(handed_over) == 1


# --- fan-out ---------------------------------------------------------------------------


def test_a_message_reaches_exactly_the_endpoints_subscribed_to_its_type(
    api, tenant, other_tenant, event_type
):
    # given acme's endpoints: for every type, for invoice.paid, for another type,
    # for invoice.paid among others, and a disabled one; and globex's endpoint for everything
    other_type = EventTypeFactory.create(name="user.created")
    everything = EndpointFactory.create(tenant=tenant)
    paid_only = EndpointFactory.create(tenant=tenant, event_types=[event_type])
    EndpointFactory.create(tenant=tenant, event_types=[other_type])
    paid_and_other = EndpointFactory.create(tenant=tenant, event_types=[other_type, event_type])
    disabled = EndpointFactory.create(tenant=tenant, enabled=False)
    EndpointFactory.create(tenant=other_tenant)

    # when acme publishes invoice.paid
    response = api.post(BASE, PAID, format="json")

    # then exactly the subscribed endpoints of acme got a delivery: pending,
    # or skipped for the disabled one
    assert response.status_code == 202, response.json()
    assert response.json()["deliveries"] == 4
    message = Message.objects.get()
    got = dict(Delivery.objects.filter(message=message).values_list("endpoint_id", "status"))
    assert got == {
        everything.pk: "pending",
        paid_only.pk: "pending",
        paid_and_other.pk: "pending",
        disabled.pk: "skipped",
    }
    assert Delivery.objects.count() == 4
    skipped = Delivery.objects.get(endpoint=disabled)
    assert skipped.next_attempt_at is None
    assert set(Delivery.objects.values_list("tenant_id", "event_type_id")) == {(tenant.pk, event_type.pk)}


def test_ingest_is_one_transaction(api, tenant, event_type, monkeypatch):
    # given fan-out fails after the message row was inserted
    EndpointFactory.create(tenant=tenant)
    inserted: list[int] = []

    def fail_after_message_insert(*args, **kwargs):
        inserted.append(Message.objects.count())
        raise RuntimeError("database went away mid-fan-out")

    monkeypatch.setattr(Delivery.objects, "bulk_create", fail_after_message_insert)

    # when acme publishes
    with pytest.raises(RuntimeError, match="mid-fan-out"):
        api.post(BASE, PAID, format="json")

    # then the message had been written, and was rolled back with everything else
    assert inserted == [1]
    assert Message.objects.count() == 0
    assert Delivery.objects.count() == 0


def test_first_attempts_are_handed_over_only_after_commit(
    api, tenant, event_type, handed_over, django_capture_on_commit_callbacks
):
    # given two enabled endpoints and a disabled one
    EndpointFactory.create(tenant=tenant)
    EndpointFactory.create(tenant=tenant)
    EndpointFactory.create(tenant=tenant, enabled=False)

    # when acme publishes, and before the transaction commits
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(BASE, PAID, format="json")
    assert response.status_code == 202

    # then nothing was handed over yet
    assert handed_over == []
    assert len(callbacks) == 1

    # and on commit exactly the pending deliveries are handed over, not the skipped one
    callbacks[0]()
    pending = Delivery.objects.filter(status=Delivery.Status.PENDING).values_list("pk", flat=True)
    assert len(handed_over) == 1
    assert sorted(handed_over[0]) == sorted(pending)
    assert len(handed_over[0]) == 2


def test_nothing_is_handed_over_when_ingest_rolls_back(
    api, tenant, event_type, handed_over, django_capture_on_commit_callbacks
):
    # given a batch whose last item is invalid, after two that fan out to an endpoint
    EndpointFactory.create(tenant=tenant)
    batch = {"messages": [PAID, PAID, {"event_type": "invoice.paid", "payload": "not an object"}]}

    # when acme publishes it and the request's transaction ends
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post(BATCH, batch, format="json")

    # then no hand-off was registered for the rolled-back items, nothing was handed over
    assert_error(response, 422)
    assert callbacks == []
    assert handed_over == []
    assert Message.objects.count() == 0 and Delivery.objects.count() == 0


def test_a_broken_queue_does_not_fail_an_accepted_message(
    api, tenant, event_type, monkeypatch, django_capture_on_commit_callbacks
):
    # given the broker is down
    EndpointFactory.create(tenant=tenant)

    def broker_down(*args):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(tasks, "enqueue_fresh", broker_down)

    # when acme publishes
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(BASE, PAID, format="json")

    # then it is accepted and the delivery waits, due, in PostgreSQL
    assert response.status_code == 202
    assert Delivery.objects.get().status == Delivery.Status.PENDING


# --- batch -----------------------------------------------------------------------------


def test_a_batch_publishes_every_message(api, tenant, event_type):
    EndpointFactory.create(tenant=tenant)
    batch = {"messages": [PAID, {**PAID, "id": "mine"}, {"event_type": "invoice.paid", "payload": {"n": 3}}]}

    response = api.post(BATCH, batch, format="json")

    assert response.status_code == 202, response.json()
    data = response.json()["data"]
    assert len(data) == 3
    assert data[1]["id"] == "mine"
    assert all(item["deliveries"] == 1 for item in data)
    assert set(Message.objects.values_list("uid", flat=True)) == {item["id"] for item in data}
    assert Delivery.objects.count() == 3


def test_a_batch_is_handed_to_the_workers_once_in_order(
    api, tenant, event_type, handed_over, django_capture_on_commit_callbacks
):
    # given two endpoints of acme
    EndpointFactory.create(tenant=tenant)
    EndpointFactory.create(tenant=tenant)
    batch = {"messages": [{"event_type": "invoice.paid", "payload": {"n": n}} for n in range(5)]}

    # when acme publishes five messages in one batch
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(BATCH, batch, format="json")

    # then the messages keep the batch's order and all ten deliveries go to the workers
    # in one hand-off after commit, not one per message
    assert response.status_code == 202, response.json()
    uids = [item["id"] for item in response.json()["data"]]
    assert [m.payload["n"] for m in Message.objects.order_by("pk")] == list(range(5))
    assert list(Message.objects.order_by("pk").values_list("uid", flat=True)) == uids
    assert handed_over == [sorted(Delivery.objects.values_list("pk", flat=True))]


def test_a_batch_with_an_invalid_item_stores_none_of_it(api, tenant, event_type):
    # given items 0-2 are valid and item 3 is not
    EndpointFactory.create(tenant=tenant)
    batch = {"messages": [PAID, PAID, PAID, {"event_type": "invoice.paid", "payload": [1]}, PAID]}
    before = counts()

    # when acme publishes the batch
    response = api.post(BATCH, batch, format="json")

    # then 422 names the item and field, and none of the batch is stored
    details = assert_error(response, 422, "validation_error")
    assert list(details) == ["messages.3.payload"]
    assert counts() == before


@pytest.mark.parametrize(
    ("bad_item", "name"),
    [
        ({"payload": {}}, "messages.1.event_type"),
        ({"event_type": "no.such", "payload": {}}, "messages.1.event_type"),
        ({"event_type": "invoice.paid", "payload": {}, "id": "bad id"}, "messages.1.id"),
        ({"event_type": "invoice.paid", "payload": {"amount": "x"}}, "messages.1.payload"),
    ],
)
def test_batch_errors_name_the_item(api, tenant, event_type, bad_item, name):
    EventType.objects.filter(pk=event_type.pk).update(schema=INVOICE_SCHEMA)
    before = snapshot()

    response = api.post(BATCH, {"messages": [PAID, bad_item, PAID]}, format="json")

    assert name in assert_error(response, 422, "validation_error")
    assert snapshot() == before


@pytest.mark.parametrize("body", [{"messages": []}, {}, {"messages": "x"}, {"messages": [1]}])
def test_a_malformed_batch_is_422(api, tenant, event_type, body):
    response = api.post(BATCH, body, format="json")

    assert any(k.startswith("messages") for k in assert_error(response, 422, "validation_error"))
    assert Message.objects.count() == 0


def test_a_batch_over_the_limit_is_422(api, tenant, event_type, settings):
    settings.HOOKPOST_MAX_BATCH_MESSAGES = 3

    response = api.post(BATCH, {"messages": [PAID] * 4}, format="json")

    assert assert_error(response, 422, "validation_error")["messages"]
    assert Message.objects.count() == 0


def test_a_repeated_batch_with_the_same_idempotency_key_adds_nothing(api, tenant, event_type):
    # given a batch published with Idempotency-Key B
    EndpointFactory.create(tenant=tenant)
    batch = {"messages": [PAID, {"event_type": "invoice.paid", "payload": {"n": 2}}]}
    first = api.post(BATCH, batch, format="json", HTTP_IDEMPOTENCY_KEY="B")
    assert first.status_code == 202, first.json()
    before = snapshot()

    # when it is sent again with B
    second = api.post(BATCH, batch, format="json", HTTP_IDEMPOTENCY_KEY="B")

    # then 200 with the same messages and no new rows
    assert second.status_code == 200, second.json()
    assert second.json() == first.json()
    assert snapshot() == before
    assert Message.objects.count() == 2 and Delivery.objects.count() == 2


def test_a_single_message_repeated_in_a_batch_is_published_once(api, tenant, event_type):
    EndpointFactory.create(tenant=tenant)

    response = api.post(BATCH, {"messages": [{**PAID, "id": "dup"}, {**PAID, "id": "dup"}]}, format="json")

    assert response.status_code == 202, response.json()
    assert [m["id"] for m in response.json()["data"]] == ["dup", "dup"]
    assert [m["deliveries"] for m in response.json()["data"]] == [1, 1]
    assert Message.objects.count() == 1 and Delivery.objects.count() == 1


# --- list and detail -------------------------------------------------------------------


def test_lists_the_tenants_messages_newest_first(api, tenant, other_tenant, event_type):
    now = timezone.now()
    old = MessageFactory.create(tenant=tenant, event_type=event_type, created_at=now - timedelta(hours=1))
    new = MessageFactory.create(tenant=tenant, event_type=event_type, created_at=now)
    MessageFactory.create(tenant=other_tenant, event_type=event_type)

    response = api.get(BASE)

    assert response.status_code == 200
    body = response.json()
    assert [m["id"] for m in body["data"]] == [new.uid, old.uid]
    assert body["next"] is None
    assert body["data"][0] == {
        "id": new.uid,
        "event_type": "invoice.paid",
        "payload": new.payload,
        "idempotency_key": None,
        "created_at": new.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def test_message_list_filters(api, tenant, event_type):
    # given messages of two types at three times
    now = timezone.now()
    other = EventTypeFactory.create(name="user.created")
    early = MessageFactory.create(tenant=tenant, event_type=event_type, created_at=now - timedelta(hours=2))
    middle = MessageFactory.create(tenant=tenant, event_type=other, created_at=now - timedelta(hours=1))
    late = MessageFactory.create(tenant=tenant, event_type=event_type, created_at=now)

    def ids(**params):
        response = api.get(BASE, params)
        assert response.status_code == 200, response.json()
        return [m["id"] for m in response.json()["data"]]

    # then each filter selects what it says, and they combine
    assert ids(event_type="invoice.paid") == [late.uid, early.uid]
    assert ids(event_type="user.created") == [middle.uid]
    assert ids(event_type="nope") == []
    cut = (now - timedelta(minutes=90)).isoformat()
    assert ids(after=cut) == [late.uid, middle.uid]
    assert ids(before=cut) == [early.uid]
    assert ids(after=cut, event_type="invoice.paid") == [late.uid]
    assert ids(after=early.created_at.isoformat(), before=late.created_at.isoformat()) == [middle.uid]


@pytest.mark.parametrize("params", [{"after": "yesterday"}, {"before": "2024-13-01T00:00:00Z"}])
def test_a_bad_message_filter_is_422(api, tenant, params):
    response = api.get(BASE, params)

    assert set(assert_error(response, 422, "validation_error")) == set(params)


def test_message_detail_shows_its_deliveries(api, world):
    second = EndpointFactory.create(tenant=world.tenant)
    other = delivery_services.message_publish(
        tenant=world.tenant, new=delivery_services.NewMessage(event_type="invoice.paid", payload={"x": 1})
    ).message

    response = api.get(f"{BASE}{other.uid}/")

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["event_type"], body["payload"]) == (other.uid, "invoice.paid", {"x": 1})
    assert sorted(d["endpoint"] for d in body["deliveries"]) == sorted([world.endpoint.uid, second.uid])
    assert {d["id"] for d in body["deliveries"]} == set(
        Delivery.objects.filter(message=other).values_list("uid", flat=True)
    )
    assert all(d["message"] == other.uid and d["status"] == "pending" for d in body["deliveries"])


def test_an_unknown_message_is_404(api, tenant):
    assert_error(api.get(f"{BASE}msg_unknown/"), 404, "not_found")
