"""Cursor pagination of every list: ``{"data": [...], "next": cursor|null}``,
newest first, ``?limit=`` 1-250 (default 50)."""

from __future__ import annotations

import base64
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Delivery, Message
from tests.api.helpers import assert_error
from tests.factories import EndpointFactory, EventTypeFactory, MessageFactory, TenantFactory
from webhooks.models import Endpoint, EventType, Tenant


def _walk(client, path, **params):
    """Every page of ``path`` with ?limit=2, following ``next``; returns the pages' ids."""
    pages: list[list[str]] = []
    cursor = None
    for _ in range(50):  # a broken cursor must not loop forever
        query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, query)
        assert response.status_code == 200, response.json()
        body = response.json()
        assert set(body) == {"data", "next"}
        pages.append([item.get("id") or item.get("uid") or item["name"] for item in body["data"]])
        cursor = body["next"]
        if cursor is None:
            return pages
    raise AssertionError("pagination did not end")


def _newest_first(queryset, key):
    return list(queryset.order_by("-created_at", "-id").values_list(key, flat=True))


def test_message_pages_are_newest_first_without_duplicates_or_gaps(api, tenant, event_type):
    # given 5 messages of acme at distinct times (and one of another tenant)
    now = timezone.now()
    for minutes in range(5):
        MessageFactory.create(
            tenant=tenant, event_type=event_type, created_at=now - timedelta(minutes=minutes)
        )
    MessageFactory.create(event_type=event_type)

    # when acme walks its messages two at a time
    pages = _walk(api, "/api/v1/tenants/acme/messages/")

    # then 2 + 2 + 1, newest first, every message exactly once, and next is null at the end
    assert [len(page) for page in pages] == [2, 2, 1]
    expected = _newest_first(Message.objects.filter(tenant=tenant), "uid")
    assert [uid for page in pages for uid in page] == expected


def test_delivery_pages_handle_rows_created_at_the_same_instant(api, tenant, event_type):
    # given two messages each fanned out to 3 endpoints: the deliveries of one
    # message share one created_at
    for _ in range(3):
        EndpointFactory.create(tenant=tenant)
    for n in range(2):
        delivery_services.message_publish(
            tenant=tenant, new=delivery_services.NewMessage(event_type="invoice.paid", payload={"n": n})
        )
    assert Delivery.objects.values("created_at").distinct().count() == 2

    # when acme walks its deliveries two at a time
    pages = _walk(api, "/api/v1/tenants/acme/deliveries/")

    # then every delivery comes exactly once, in the list's order
    assert [len(page) for page in pages] == [2, 2, 2]
    assert [uid for page in pages for uid in page] == _newest_first(Delivery.objects.all(), "uid")


def test_filters_apply_on_every_page(api, tenant, event_type):
    other = EventTypeFactory.create(name="user.created")
    now = timezone.now()
    for minutes in range(6):
        kind = event_type if minutes % 2 else other
        MessageFactory.create(tenant=tenant, event_type=kind, created_at=now - timedelta(minutes=minutes))

    pages = _walk(api, "/api/v1/tenants/acme/messages/", event_type="invoice.paid")

    assert [len(page) for page in pages] == [2, 1]
    expected = _newest_first(Message.objects.filter(event_type=event_type), "uid")
    assert [uid for page in pages for uid in page] == expected


def test_rows_arriving_while_walking_do_not_shift_later_pages(api, tenant, event_type):
    # given 4 messages, and the first page read
    now = timezone.now()
    old = [
        MessageFactory.create(tenant=tenant, event_type=event_type, created_at=now - timedelta(minutes=m))
        for m in range(4)
    ]
    first = api.get("/api/v1/tenants/acme/messages/", {"limit": 2}).json()

    # when a new message arrives before the second page is read
    MessageFactory.create(tenant=tenant, event_type=event_type, created_at=now + timedelta(seconds=1))
    second = api.get("/api/v1/tenants/acme/messages/", {"limit": 2, "cursor": first["next"]}).json()

    # then the second page continues where the first ended
    assert [m["id"] for m in first["data"] + second["data"]] == [m.uid for m in old]
    assert second["next"] is None


@pytest.mark.parametrize("kind", ["tenants", "event-types", "endpoints"])
def test_configuration_lists_paginate_too(kind, operator_api, tenant, event_type):
    # given 5 rows of the kind at distinct times
    now = timezone.now()
    for minutes in range(1, 6):
        at = now - timedelta(minutes=minutes)
        if kind == "tenants":
            TenantFactory.create(created_at=at)
        elif kind == "event-types":
            EventTypeFactory.create(created_at=at)
        else:
            EndpointFactory.create(tenant=tenant, created_at=at)
    path = {
        "tenants": "/api/v1/tenants/",
        "event-types": "/api/v1/event-types/",
        "endpoints": "/api/v1/tenants/acme/endpoints/",
    }[kind]
    expected = {
        "tenants": lambda: _newest_first(Tenant.objects.all(), "uid"),
        "event-types": lambda: _newest_first(EventType.objects.all(), "name"),
        "endpoints": lambda: _newest_first(Endpoint.objects.all(), "uid"),
    }[kind]()

    pages = _walk(operator_api, path)

    assert [key for page in pages for key in page] == expected
    assert all(len(page) == 2 for page in pages[:-1])


def test_the_default_page_is_50_and_the_largest_250(api, tenant, event_type):
    now = timezone.now()
    MessageFactory._meta.model.objects.bulk_create(
        Message(tenant=tenant, event_type=event_type, payload={}, created_at=now - timedelta(seconds=n))
        for n in range(251)
    )

    default = api.get("/api/v1/tenants/acme/messages/").json()
    largest = api.get("/api/v1/tenants/acme/messages/", {"limit": 250}).json()

    assert len(default["data"]) == 50 and default["next"] is not None
    assert len(largest["data"]) == 250 and largest["next"] is not None


@pytest.mark.parametrize(
    "limit",
    ["0", "-1", "251", "ten", "2.5", "", "²", "٣", "१०", "𝟗", "+5", " 5", "5\x00", "1_0", "9" * 5000],  # noqa: RUF001 (other scripts' digits on purpose)
)
@pytest.mark.parametrize("path", ["/api/v1/tenants/acme/messages/", "/api/v1/tenants/acme/deliveries/"])
def test_a_bad_limit_is_422_on_limit(api, tenant, path, limit):
    response = api.get(path, {"limit": limit})

    assert assert_error(response, 422, "validation_error")["limit"] == ["Must be an integer from 1 to 250."]


def test_limit_superscript_two_in_the_raw_query_is_422_not_500(api, tenant):
    response = api.get("/api/v1/tenants/acme/messages/?limit=%C2%B2")

    assert assert_error(response, 422, "validation_error")["limit"]


def _forged(**fields: str) -> str:
    """A cursor made by hand, encoded the way the API encodes its own."""
    return base64.b64encode(urlencode(fields).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        _forged(o="abc"),
        _forged(p="2024"),  # decodes, but the position is not a time
        _forged(p="2024-01-01T00:00:00"),  # no UTC offset
        _forged(p="0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
        _forged(o="٣"),  # int() reads Arabic-Indic digits
        _forged(o="²"),
        _forged(o="-1"),
        _forged(o=" 1"),
        _forged(r="²"),
        _forged(r="2"),
        "²",
    ],
    ids=[
        "garbage",
        "bad_offset",
        "not_a_time",
        "naive",
        "year_zero",
        "offset_arabic_indic",
        "offset_superscript",
        "offset_negative",
        "offset_space",
        "reverse_superscript",
        "reverse_two",
        "non_ascii",
    ],
)
@pytest.mark.parametrize(
    "path", ["/api/v1/tenants/acme/messages/", "/api/v1/tenants/acme/deliveries/", "/api/v1/tenants/"]
)
def test_a_bad_cursor_is_422_on_cursor(operator_api, tenant, path, cursor):
    response = operator_api.get(path, {"cursor": cursor})

    assert assert_error(response, 422, "validation_error")["cursor"]


def test_a_cursor_position_with_any_utc_offset_is_understood(api, tenant, event_type):
    # given messages an hour apart
    now = timezone.now().replace(microsecond=0)
    newer = MessageFactory.create(tenant=tenant, event_type=event_type, created_at=now)
    older = MessageFactory.create(tenant=tenant, event_type=event_type, created_at=now - timedelta(hours=1))

    # when a cursor names the newer one's time with an offset PostgreSQL itself refuses
    shifted = (now + timedelta(hours=23, minutes=59)).strftime("%Y-%m-%dT%H:%M:%S") + "+23:59"
    response = api.get("/api/v1/tenants/acme/messages/", {"cursor": _forged(p=shifted)})

    # then it means the same instant: the page continues after the newer message
    assert response.status_code == 200, response.json()
    assert [m["id"] for m in response.json()["data"]] == [older.uid]
    assert newer.created_at > older.created_at


def test_a_cursor_offset_past_the_cutoff_is_clamped_like_drf(api, tenant, event_type):
    # given two messages
    now = timezone.now()
    for minutes in range(2):
        MessageFactory.create(
            tenant=tenant, event_type=event_type, created_at=now - timedelta(minutes=minutes)
        )

    # when cursors carry offsets larger than DRF's cutoff (1000) and no position
    responses = [
        api.get("/api/v1/tenants/acme/messages/", {"cursor": _forged(o=offset)})
        for offset in ("5000", "9" * 5000)
    ]

    # then each is read as the cutoff: past both rows, an empty page rather than an error
    for response in responses:
        assert response.status_code == 200, response.json()
        assert response.json()["data"] == []
