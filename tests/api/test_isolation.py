"""Tenants are isolated: a foreign tenant or object is a 404 on every route,
and nothing of the other tenant changes."""

from __future__ import annotations

from deliveries.models import Message
from tests.api.helpers import TENANT_ROUTES, Route, assert_error, build_world, send, snapshot

# Methods a route does not have must not reveal a foreign tenant either.
WALK = [*TENANT_ROUTES, Route("POST", "/api/v1/tenants/{uid}/", {"name": "x"}, 405)]


def test_a_key_of_tenant_b_sees_nothing_of_tenant_a_on_any_route(
    make_client, tenant, other_tenant, event_type
):
    # given tenant A (acme) with an endpoint, a message, a delivery and an attempt,
    # and tenant B (globex) with a key and objects of its own
    a = build_world(tenant, event_type)
    build_world(other_tenant, event_type)
    b_client = make_client(other_tenant).client
    before = snapshot()

    # when B calls every tenant-scoped route, with every method, on A's uid and A's objects
    answers = {}
    for route in WALK:
        answers[route.name] = send(b_client, route.method, route.url(a.ids()), route.body)

    # then every answer is 404 in the error envelope
    assert {name: r.status_code for name, r in answers.items()} == {name: 404 for name in answers}
    for response in answers.values():
        assert_error(response, 404, "not_found")
    # and none of A's (or anyone's) data changed
    assert snapshot() == before
    assert len(answers) == 21  # every tenant-scoped route and method was walked


def test_a_key_of_tenant_b_on_its_own_uid_cannot_reach_a_objects(
    make_client, tenant, other_tenant, event_type
):
    # given A's objects and B's key
    a = build_world(tenant, event_type)
    build_world(other_tenant, event_type)
    b_client = make_client(other_tenant).client
    before = snapshot()

    # when B addresses A's endpoint, message and delivery ids under its own uid
    object_routes = [r for r in TENANT_ROUTES if "{ep}" in r.path or "{msg}" in r.path or "{dlv}" in r.path]
    b_path_a_ids = {**a.ids(), "uid": "globex"}
    answers = {r.name: send(b_client, r.method, r.url(b_path_a_ids), r.body) for r in object_routes}

    # then each is 404, as for an id that does not exist, and nothing changed
    assert {name: r.status_code for name, r in answers.items()} == {name: 404 for name in answers}
    for response in answers.values():
        assert_error(response, 404, "not_found")
    assert snapshot() == before
    assert len(answers) == 10


def test_a_foreign_tenant_looks_exactly_like_a_missing_one(make_client, tenant, other_tenant):
    # a key of B gets the same answer for A's uid as for a uid that does not exist
    b_client = make_client(other_tenant).client

    for route in WALK:
        ids = {"uid": "acme", "ep": "ep_x", "msg": "msg_x", "dlv": "dlv_x"}
        existing = send(b_client, route.method, route.url(ids), route.body)
        missing = send(b_client, route.method, route.url({**ids, "uid": "no-such-tenant"}), route.body)
        assert (existing.status_code, existing.json()) == (missing.status_code, missing.json()), route.name


def test_lists_and_filters_show_only_the_keys_tenant(make_client, tenant, other_tenant, event_type):
    # given both tenants published
    a = build_world(tenant, event_type)
    b = build_world(other_tenant, event_type)
    b_client = make_client(other_tenant).client
    base = "/api/v1/tenants/globex"

    # then B's lists hold only B's rows, even when filtered by A's ids
    def ids(path, **params):
        response = b_client.get(f"{base}/{path}/", params)
        assert response.status_code == 200
        return [item["id"] for item in response.json()["data"]]

    assert ids("endpoints") == [b.endpoint.uid]
    assert ids("messages") == [b.message.uid]
    assert ids("deliveries") == [b.delivery.uid]
    assert ids("deliveries", endpoint=a.endpoint.uid) == []
    assert ids("deliveries", message=a.message.uid) == []


def test_publishing_with_a_foreign_message_id_does_not_touch_the_foreign_message(
    make_client, tenant, other_tenant, event_type
):
    # given A's message
    a = build_world(tenant, event_type)
    b_client = make_client(other_tenant).client

    # when B publishes with A's message id as its own id
    response = b_client.post(
        "/api/v1/tenants/globex/messages/",
        {"event_type": "invoice.paid", "payload": {"b": True}, "id": a.message.uid},
        format="json",
    )

    # then B gets a new message of its own; A's is unchanged
    assert response.status_code == 202, response.json()
    assert Message.objects.get(tenant=other_tenant).payload == {"b": True}
    assert Message.objects.get(tenant=tenant).payload == a.message.payload
