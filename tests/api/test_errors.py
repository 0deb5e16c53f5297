"""Bad requests get a clear 4xx in the error envelope and change nothing:
size limits (413), media type (415), malformed JSON (400), unknown routes."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import RequestFactory

from config.api import errors
from deliveries.models import Message
from tests.api.helpers import ROUTES, Route, assert_error, snapshot
from tests.factories import EndpointFactory

MESSAGES = "/api/v1/tenants/acme/messages/"
BATCH = f"{MESSAGES}batch/"
WRITE_ROUTES = [r for r in ROUTES if r.method in ("POST", "PATCH")]


@pytest.fixture
def keyed(make_client, world):
    """Per route, a client with the key the route needs."""
    operator = make_client(None).client
    tenant = make_client(world.tenant).client
    return lambda route: operator if route.operator else tenant


# --- 413 -------------------------------------------------------------------------------


def test_a_payload_over_the_limit_is_413_and_not_stored(api, tenant, event_type, settings):
    # given a payload limit of 100 bytes
    settings.HOOKPOST_MAX_PAYLOAD_BYTES = 100
    EndpointFactory.create(tenant=tenant)
    before = snapshot()

    # when acme publishes a 200-byte payload
    response = api.post(MESSAGES, {"event_type": "invoice.paid", "payload": {"x": "a" * 200}}, format="json")

    # then 413 and nothing is stored
    details = assert_error(response, 413, "payload_too_large")
    assert details["payload"]
    assert snapshot() == before


def test_a_payload_at_the_limit_is_accepted(api, tenant, event_type, settings):
    payload = {"x": "a" * 100}
    settings.HOOKPOST_MAX_PAYLOAD_BYTES = len(json.dumps(payload, separators=(",", ":")))

    response = api.post(MESSAGES, {"event_type": "invoice.paid", "payload": payload}, format="json")

    assert response.status_code == 202, response.json()


def test_a_batch_item_over_the_payload_limit_is_413_and_nothing_is_stored(api, tenant, event_type, settings):
    settings.HOOKPOST_MAX_PAYLOAD_BYTES = 100
    small = {"event_type": "invoice.paid", "payload": {"x": 1}}
    big = {"event_type": "invoice.paid", "payload": {"x": "a" * 200}}

    response = api.post(BATCH, {"messages": [small, small, big]}, format="json")

    assert_error(response, 413, "payload_too_large")
    assert Message.objects.count() == 0


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=lambda r: r.name)
def test_a_request_body_over_the_limit_is_413_on_every_write_route(route, keyed, world, settings):
    # given a request limit of 1 KiB
    settings.HOOKPOST_MAX_REQUEST_BYTES = 1024
    body = json.dumps({**(route.body or {}), "padding": "p" * 2048})
    before = snapshot()

    # when a 2 KiB body is sent
    call = getattr(keyed(route), route.method.lower())
    response = call(route.url(world.ids()), body, content_type="application/json")

    # then 413 and nothing changed
    assert_error(response, 413, "payload_too_large")
    assert snapshot() == before


# --- 415 and 400 -----------------------------------------------------------------------


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=lambda r: r.name)
def test_a_body_that_is_not_json_is_415_on_every_write_route(route, keyed, world):
    before = snapshot()

    call = getattr(keyed(route), route.method.lower())
    response = call(route.url(world.ids()), json.dumps(route.body or {}), content_type="text/plain")

    assert_error(response, 415, "unsupported_media_type")
    assert snapshot() == before


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=lambda r: r.name)
def test_malformed_json_is_400_on_every_write_route(route, keyed, world):
    before = snapshot()

    call = getattr(keyed(route), route.method.lower())
    response = call(route.url(world.ids()), '{"name": ', content_type="application/json")

    assert_error(response, 400, "malformed_request")
    assert snapshot() == before


@pytest.mark.parametrize(
    "raw",
    [
        '{"event_type": "invoice.paid", "payload": {"x": NaN}}',
        '{"event_type": "invoice.paid", "payload": {"x": Infinity}}',
        '{"event_type": "invoice.paid", "payload": {"x": -Infinity}}',
        '{"event_type": "invoice.paid", "payload": {"x": 1}',
        b'{"event_type": "invoice.paid", "payload": {"x": "\xff"}}',
        "",
    ],
    ids=["nan", "infinity", "minus_infinity", "unterminated", "not_utf8", "empty_with_length"],
)
def test_json_that_is_not_strict_json_is_400(api, tenant, event_type, raw):
    # an empty body is sent as a single space so it has a length and is parsed
    response = api.post(MESSAGES, raw or " ", content_type="application/json")

    assert_error(response, 400, "malformed_request")
    assert Message.objects.count() == 0


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ('{"event_type": "invoice.paid", "payload": {"x": "nul\\u0000byte"}}', "NUL in a string"),
        ('{"event_type": "invoice.paid", "payload": {"nul\\u0000key": 1}}', "NUL in a key"),
        ('{"event_type": "invoice.paid", "payload": {"x": "\\ud800"}}', "unpaired surrogate"),
        ('{"event_type": "invoice.paid", "payload": ' + "[" * 100_000 + "]" * 100_000 + "}", "deep nesting"),
    ],
    ids=["nul_value", "nul_key", "surrogate", "deep"],
)
def test_json_that_cannot_be_stored_is_a_client_error_not_a_crash(api, tenant, event_type, raw, why):
    # given valid-looking JSON that PostgreSQL (or Python) cannot store as sent
    EndpointFactory.create(tenant=tenant)
    before = snapshot()

    # when acme publishes it
    response = api.post(MESSAGES, raw, content_type="application/json")

    # then 400 in the envelope (not a 500 from the database), and nothing stored
    assert response.status_code == 400, why
    assert_error(response, 400, "malformed_request")
    assert snapshot() == before


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=lambda r: r.name)
def test_strings_that_cannot_be_stored_are_400_on_every_write_route(route, keyed, world):
    # a NUL character in any string of any body is refused before a view sees it
    raw = json.dumps({**(route.body or {}), "description": "a\u0000b"})
    before = snapshot()

    call = getattr(keyed(route), route.method.lower())
    response = call(route.url(world.ids()), raw, content_type="application/json")

    assert_error(response, 400, "malformed_request")
    assert snapshot() == before


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def test_deep_but_reasonable_payloads_are_accepted(api, tenant, event_type):
    # given a recursive schema, so validation walks every level
    event_type.schema = {"type": "object", "additionalProperties": {"$ref": "#"}}
    event_type.save()

    # a payload 60 levels deep is accepted, singly and in a batch
    message = {"event_type": "invoice.paid", "payload": _nested(60)}
    single = api.post(MESSAGES, message, format="json")
    batch = api.post(BATCH, {"messages": [message]}, format="json")

    assert (single.status_code, batch.status_code) == (202, 202), (single.json(), batch.json())
    assert Message.objects.count() == 2


def test_a_number_overflowing_to_infinity_is_422_on_payload(api, tenant, event_type):
    raw = '{"event_type": "invoice.paid", "payload": {"x": 1e400}}'

    response = api.post(MESSAGES, raw, content_type="application/json")

    assert assert_error(response, 422, "validation_error")["payload"]
    assert Message.objects.count() == 0


def test_a_json_body_that_is_not_an_object_is_422(api, tenant, event_type):
    response = api.post(MESSAGES, "[1, 2]", content_type="application/json")

    assert assert_error(response, 422, "validation_error")
    assert Message.objects.count() == 0


# --- routing ---------------------------------------------------------------------------


def test_an_unknown_route_is_404_in_the_envelope(api):
    assert_error(api.get("/api/v1/no-such-thing/"), 404, "not_found")


def test_a_method_a_route_does_not_have_is_405_in_the_envelope(api, tenant):
    assert_error(api.put("/api/v1/tenants/acme/messages/", {}, format="json"), 405, "method_not_allowed")


NUL_CASES = [(r, "tenant_uid") for r in ROUTES if "{uid}" in r.path] + [
    (r, "object_id") for r in ROUTES if any(f"{{{k}}}" in r.path for k in ("et", "ep", "msg", "dlv"))
]


@pytest.mark.parametrize(("route", "which"), NUL_CASES, ids=lambda c: c.name if isinstance(c, Route) else c)
def test_an_id_with_a_nul_character_is_404_not_a_crash(route, which, keyed, world):
    # a NUL can be sent percent-encoded in a path; PostgreSQL cannot even compare it
    ids = {key: "x%00y" for key in world.ids()}
    if which == "object_id":
        ids["uid"] = world.tenant.uid
    before = snapshot()

    call = getattr(keyed(route), route.method.lower())
    kwargs = {} if route.method in ("GET", "DELETE") else {"data": route.body, "format": "json"}
    response = call(route.url(ids), **kwargs)

    assert_error(response, 404, "not_found")
    assert snapshot() == before


@pytest.mark.parametrize("path", [MESSAGES, BATCH])
def test_an_idempotency_key_with_a_nul_character_is_422(api, tenant, event_type, path):
    message = {"event_type": "invoice.paid", "payload": {}}
    body = message if path == MESSAGES else {"messages": [message]}

    response = api.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="a\x00b")

    details = assert_error(response, 422, "validation_error")
    assert any(name.endswith("idempotency_key") for name in details), details
    assert Message.objects.count() == 0


# --- 503 while PostgreSQL is unreachable ---------------------------------------------------
# (tests/e2e/test_database_outage.py cuts a real gunicorn off its real database)


@pytest.fixture
def database_down(db):
    """Every new query fails as it does when PostgreSQL refuses connections (undone
    before the test database is rolled back)."""

    def refuse(self):
        raise OperationalError('connection failed: connection to server at "127.0.0.1", port 5432 failed')

    with mock.patch.object(BaseDatabaseWrapper, "ensure_connection", refuse):
        yield


UNAVAILABLE_CALLS = [
    ("get", "/api/v1/tenants/acme/endpoints/"),
    ("post", MESSAGES),
    ("get", "/api/v1/event-types/"),
]


@pytest.mark.parametrize(("method", "path"), UNAVAILABLE_CALLS)
def test_an_unreachable_database_is_503_with_retry_after_in_the_envelope(
    api, tenant, database_down, method, path
):
    # given a tenant key, and PostgreSQL unreachable
    # when the API is called (the key lookup is the first query)
    response = getattr(api, method)(path, {"event_type": "invoice.paid", "payload": {}}, format="json")

    # then 503 in the envelope, with Retry-After
    assert_error(response, 503, "service_unavailable")
    assert int(response["Retry-After"]) > 0


def test_an_unreachable_database_is_a_plain_503_page_with_retry_after_in_the_admin(client, database_down):
    # given PostgreSQL unreachable (the admin's session lookup is outside any API view)
    client.raise_request_exception = False
    client.cookies["sessionid"] = "x" * 32

    # when the admin is opened
    response = client.get("/admin/")

    # then a plain 503 page with Retry-After
    assert response.status_code == 503, response.content[:500]
    assert response["Content-Type"].startswith("text/html")
    assert int(response["Retry-After"]) > 0


def test_the_server_error_handler_answers_503_in_the_envelope_for_an_unreachable_database():
    # given an API request that failed on the database outside DRF's exception handling
    request = RequestFactory().get("/api/v1/event-types/")
    try:
        raise OperationalError("server closed the connection unexpectedly")
    except OperationalError:
        # when Django's handler500 answers it (Django calls it inside its except block)
        response = errors.json_server_error(request)

    # then 503 in the envelope, with Retry-After
    assert response.status_code == 503
    assert json.loads(response.content)["error"]["code"] == "service_unavailable"
    assert int(response["Retry-After"]) > 0


def test_other_server_errors_stay_500(api, tenant, monkeypatch):
    from deliveries import selectors

    def boom(**_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(selectors, "delivery_list", boom)
    api.raise_request_exception = False

    assert_error(api.get("/api/v1/tenants/acme/deliveries/"), 500, "internal_error")


class _PsycopgError(Exception):
    """Stands in for a psycopg error as the cause of Django's wrapper: its SQLSTATE."""

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _operational(sqlstate: str | None) -> Exception:
    from django.db import OperationalError

    error = OperationalError("boom")
    error.__cause__ = _PsycopgError(sqlstate)
    return error


@pytest.mark.parametrize("sqlstate", [None, "08006", "08001", "57P01", "57P03", "53300", "40P01", "40001"])
def test_connection_failures_and_transient_errors_are_the_database_being_unavailable(sqlstate):
    from config.api.errors import database_unavailable

    assert database_unavailable(_operational(sqlstate))


@pytest.mark.parametrize("sqlstate", ["53100", "54000", "54001", "55000", "58P01"])
def test_operational_errors_that_would_fail_again_are_not_answered_503(sqlstate):
    # disk full, program limit exceeded, statement too complex, ...: retrying cannot help
    from config.api.errors import database_unavailable

    assert not database_unavailable(_operational(sqlstate))
