"""/api/v1/tenants/{uid}/endpoints/: register, change, delete; secrets and rotation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deliveries.models import Attempt, Delivery, Message
from tests.api.helpers import assert_error, snapshot
from tests.factories import EndpointFactory, EventTypeFactory
from webhooks import selectors, signing
from webhooks.models import Endpoint, EndpointSecret

BASE = "/api/v1/tenants/acme/endpoints/"
SEVEN_DAYS = 7 * 24 * 3600


def _detail(endpoint: Endpoint) -> str:
    return f"{BASE}{endpoint.uid}/"


# --- list ------------------------------------------------------------------------------


def test_lists_the_tenants_endpoints_newest_first_without_secrets(api, tenant, other_tenant):
    # given two endpoints of acme and one of globex
    now = timezone.now()
    older = EndpointFactory.create(tenant=tenant, created_at=now - timedelta(minutes=1))
    newer = EndpointFactory.create(tenant=tenant, created_at=now)
    EndpointFactory.create(tenant=other_tenant)

    # when acme lists its endpoints
    response = api.get(BASE)

    # then it sees its own two, newest first, and no secret
    assert response.status_code == 200
    data = response.json()["data"]
    assert [e["id"] for e in data] == [newer.uid, older.uid]
    assert all("secret" not in e for e in data)


# --- create ----------------------------------------------------------------------------


def test_creates_an_endpoint_and_returns_its_secret_once(api, tenant, event_type):
    # when acme registers an endpoint for invoice.paid with every option
    body = {
        "url": "https://receiver.example.com/hook",
        "description": "billing",
        "event_types": ["invoice.paid"],
        "headers": {"X-Team": "billing"},
        "rate_limit": 10,
        "timeout_seconds": 5,
        "retry_schedule": [1, 60, 3600],
    }
    response = api.post(BASE, body, format="json")

    # then 201 with the endpoint and a whsec_ secret, which is its stored current secret
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["id"].startswith("ep_")
    assert created["secret"].startswith("whsec_")
    signing.decode_secret(created["secret"])
    endpoint = Endpoint.objects.get(uid=created["id"])
    assert endpoint.tenant == tenant
    assert (endpoint.url, endpoint.description, endpoint.enabled) == (body["url"], "billing", True)
    assert [et.name for et in endpoint.event_types.all()] == ["invoice.paid"]
    assert (endpoint.headers, endpoint.rate_limit, endpoint.timeout_seconds) == ({"X-Team": "billing"}, 10, 5)
    assert endpoint.retry_schedule == [1, 60, 3600]
    assert list(EndpointSecret.objects.filter(endpoint=endpoint).values_list("secret", "expires_at")) == [
        (created["secret"], None)
    ]
    # and the secret is not shown again
    assert "secret" not in api.get(_detail(endpoint)).json()


def test_a_minimal_endpoint_gets_the_defaults(api, tenant):
    response = api.post(BASE, {"url": "https://receiver.example.com/hook"}, format="json")

    assert response.status_code == 201, response.json()
    endpoint = Endpoint.objects.get(uid=response.json()["id"])
    assert endpoint.event_types.count() == 0  # every event type
    assert endpoint.enabled is True
    assert endpoint.timeout_seconds == 15
    assert endpoint.retry_schedule is None  # the platform default
    assert endpoint.headers == {}


def test_an_endpoint_created_disabled_records_why(api, tenant):
    response = api.post(BASE, {"url": "https://receiver.example.com/hook", "enabled": False}, format="json")

    assert response.status_code == 201, response.json()
    endpoint = Endpoint.objects.get(uid=response.json()["id"])
    assert endpoint.enabled is False
    assert endpoint.disabled_reason and endpoint.disabled_at is not None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://receiver.example.com/hook",
        "file:///etc/passwd",
        "http://127.0.0.1:8000/hook",
        "http://10.0.0.5/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hook",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://2130706433/hook",
        "http://0177.0.0.1/hook",
        "http://localhost/hook",
        "http://metadata.internal/hook",
        "https://user:pass@receiver.example.com/hook",
        "not a url",
    ],
)
def test_a_refused_target_url_is_422_on_url(api, tenant, no_allowlist, url):
    before = snapshot()

    response = api.post(BASE, {"url": url}, format="json")

    details = assert_error(response, 422, "validation_error")
    assert details["url"], details
    assert snapshot() == before


def test_allowlisted_networks_may_be_targets(api, tenant, settings):
    # given the development allowlist
    settings.HOOKPOST_ALLOWED_TARGET_NETWORKS = ["10.0.0.0/8"]

    # then a private address in it is accepted, one outside it is not
    assert api.post(BASE, {"url": "http://10.1.2.3/hook"}, format="json").status_code == 201
    assert "url" in assert_error(api.post(BASE, {"url": "http://192.168.0.1/hook"}, format="json"), 422)
    assert Endpoint.objects.count() == 1


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"headers": {"Bad Header": "x"}}, "headers"),
        ({"headers": {"Webhook-Signature": "v1,forged"}}, "headers"),
        ({"headers": {"Content-Type": "text/plain"}}, "headers"),
        ({"headers": {"X-Split": "a\r\nInjected: yes"}}, "headers"),
        ({"headers": {"X-Long": "x" * 2049}}, "headers"),
        ({"headers": "X-A: b"}, "headers"),
        ({"headers": {f"X-H{i}": "v" for i in range(51)}}, "headers"),
        ({"retry_schedule": []}, "retry_schedule"),
        ({"retry_schedule": [10, 0]}, "retry_schedule"),
        ({"retry_schedule": "soon"}, "retry_schedule"),
        ({"retry_schedule": [SEVEN_DAYS + 1]}, "retry_schedule"),
        ({"retry_schedule": [1] * 21}, "retry_schedule"),
        ({"event_types": ["no.such.type"]}, "event_types"),
        ({"event_types": ["invoice.paid", "invoice.voided"]}, "event_types"),  # archived
        ({"event_types": "invoice.paid"}, "event_types"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": 31}, "timeout_seconds"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"secret": "not-a-secret"}, "secret"),
        ({"secret": "whsec_c2hvcnQ="}, "secret"),
        ({"url": None}, "url"),
    ],
)
def test_invalid_endpoint_settings_are_422_with_field_details(api, tenant, event_type, extra, field):
    # given an archived event type next to the live one
    EventTypeFactory.create(name="invoice.voided", archived=True)
    before = snapshot()

    # when acme registers an endpoint with one bad setting
    response = api.post(BASE, {"url": "https://receiver.example.com/hook", **extra}, format="json")

    # then 422 names that setting (or an item of it) and nothing is stored
    details = assert_error(response, 422, "validation_error")
    assert any(name == field or name.startswith(f"{field}.") for name in details), details
    assert snapshot() == before


def test_an_unknown_event_type_in_the_filter_is_named(api, tenant, event_type):
    body = {"url": "https://receiver.example.com/hook", "event_types": ["invoice.paid", "nope"]}

    response = api.post(BASE, body, format="json")

    details = assert_error(response, 422, "validation_error")
    assert details["event_types"] == ["Unknown event type 'nope'."]
    assert Endpoint.objects.count() == 0


# Headers HTTP cannot carry, or that RFC 9110 forbids (names are tokens; values are
# visible ASCII, inner spaces and tabs, or Latin-1), each with a word of its refusal.
# (A NUL never gets this far: the JSON parser answers 400.)
BAD_HEADERS = [
    ({"X-Emoji": "😀 café"}, "cannot carry"),
    ({"X-A\n": "v"}, "not a valid header name"),
    ({"Ünïcode": "v"}, "not a valid header name"),
    ({"X-Name:": "v"}, "not a valid header name"),
    ({"X-" + "n" * 100: "v"}, "not a valid header name"),
    ({"X-Lead": " padded"}, "whitespace"),
    ({"X-Trail": "padded\t"}, "whitespace"),
    ({"X-Ctl": "a\x01b"}, "control"),
    ({"X-Del": "a\x7fb"}, "control"),
    ({"X-Value": ["a", "b"]}, "string"),
    ({f"X-{i}": "v" * 1000 for i in range(9)}, "at most 8192"),
]


@pytest.mark.parametrize(("headers", "why"), BAD_HEADERS)
def test_headers_that_break_rfc_9110_are_422_when_created(api, tenant, headers, why):
    before = snapshot()

    response = api.post(BASE, {"url": "https://receiver.example.com/hook", "headers": headers}, format="json")

    details = assert_error(response, 422, "validation_error")
    assert "headers" in details or any(name.startswith("headers.") for name in details), details
    assert why.lower() in str(details).lower(), details
    assert snapshot() == before


@pytest.mark.parametrize(("headers", "why"), BAD_HEADERS)
def test_headers_that_break_rfc_9110_are_422_when_patched(api, tenant, headers, why):
    endpoint = EndpointFactory.create(tenant=tenant, headers={"X-Team": "billing"})
    before = snapshot()

    response = api.patch(_detail(endpoint), {"headers": headers, "description": "changed"}, format="json")

    details = assert_error(response, 422, "validation_error")
    assert "headers" in details or any(name.startswith("headers.") for name in details), details
    assert snapshot() == before


def test_latin1_tokens_and_inner_whitespace_are_accepted_as_given(api, tenant):
    headers = {"X-Name": "café", "X-Empty": "", "X-Inner": "a \tb", "X-!#$%&'*+-.^_`|~": "ÿ"}

    response = api.post(BASE, {"url": "https://receiver.example.com/hook", "headers": headers}, format="json")

    assert response.status_code == 201, response.json()
    assert Endpoint.objects.get().headers == headers


def test_a_bring_your_own_secret_is_kept(api, tenant):
    secret = signing.generate_secret()

    response = api.post(BASE, {"url": "https://receiver.example.com/hook", "secret": secret}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["secret"] == secret
    assert selectors.endpoint_current_secret(endpoint=Endpoint.objects.get()) == secret


# --- retrieve / patch / delete ---------------------------------------------------------


def test_retrieves_an_endpoint(api, tenant, event_type):
    endpoint = EndpointFactory.create(tenant=tenant, event_types=[event_type], headers={"X-A": "b"})

    response = api.get(_detail(endpoint))

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["url"], body["event_types"], body["headers"]) == (
        endpoint.uid,
        endpoint.url,
        ["invoice.paid"],
        {"X-A": "b"},
    )
    assert body["circuit_state"] == "closed"
    assert "secret" not in body


def test_an_unknown_endpoint_is_404(api, tenant):
    assert_error(api.get(f"{BASE}ep_01ARZ3NDEKTSV4RRFFQ69G5FAV/"), 404, "not_found")


def test_patches_an_endpoint(api, tenant, event_type):
    # given an endpoint for every event type
    endpoint = EndpointFactory.create(tenant=tenant)

    # when acme points it elsewhere, filters it and sets options
    response = api.patch(
        _detail(endpoint),
        {
            "url": "https://new.example.com/hook",
            "event_types": ["invoice.paid"],
            "headers": {"X-New": "1"},
            "retry_schedule": [30],
            "rate_limit": None,
        },
        format="json",
    )

    # then the changes are stored and answered
    assert response.status_code == 200, response.json()
    assert response.json()["event_types"] == ["invoice.paid"]
    endpoint.refresh_from_db()
    assert endpoint.url == "https://new.example.com/hook"
    assert [et.name for et in endpoint.event_types.all()] == ["invoice.paid"]
    assert (endpoint.headers, endpoint.retry_schedule, endpoint.rate_limit) == ({"X-New": "1"}, [30], None)


def test_patch_with_an_empty_filter_subscribes_to_everything(api, tenant, event_type):
    endpoint = EndpointFactory.create(tenant=tenant, event_types=[event_type])

    response = api.patch(_detail(endpoint), {"event_types": []}, format="json")

    assert response.status_code == 200, response.json()
    assert endpoint.event_types.count() == 0


def test_disabling_and_re_enabling_an_endpoint(api, tenant):
    endpoint = EndpointFactory.create(tenant=tenant)

    # when acme disables it
    assert api.patch(_detail(endpoint), {"enabled": False}, format="json").status_code == 200
    endpoint.refresh_from_db()

    # then it is disabled with a reason and a time
    assert endpoint.enabled is False
    assert endpoint.disabled_reason and endpoint.disabled_at is not None

    # and re-enabling clears them
    assert api.patch(_detail(endpoint), {"enabled": True}, format="json").status_code == 200
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at) == (True, "", None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://receiver.example.com/", "description": "changed"}, "url"),
        ({"url": "http://127.0.0.1/", "description": "changed"}, "url"),
        ({"event_types": ["nope"], "description": "changed"}, "event_types"),
        ({"headers": {"Host": "evil"}, "description": "changed"}, "headers"),
        ({"retry_schedule": [0], "description": "changed"}, "retry_schedule"),
        ({"timeout_seconds": 99, "description": "changed"}, "timeout_seconds"),
    ],
)
def test_an_invalid_patch_changes_nothing(api, tenant, event_type, no_allowlist, body, field):
    endpoint = EndpointFactory.create(tenant=tenant, event_types=[event_type])
    before = snapshot()

    response = api.patch(_detail(endpoint), body, format="json")

    details = assert_error(response, 422, "validation_error")
    assert any(name == field or name.startswith(f"{field}.") for name in details), details
    assert snapshot() == before


def test_deleting_an_endpoint_removes_its_secrets_and_deliveries(api, world):
    # given acme's endpoint with a delivery and an attempt, and a second endpoint
    keep = EndpointFactory.create(tenant=world.tenant)

    # when acme deletes the first endpoint
    response = api.delete(_detail(world.endpoint))

    # then it, its secrets, deliveries and attempts are gone; the message and the other endpoint stay
    assert response.status_code == 204
    assert list(Endpoint.objects.all()) == [keep]
    assert not EndpointSecret.objects.filter(endpoint_id=world.endpoint.pk).exists()
    assert not Delivery.objects.exists() and not Attempt.objects.exists()
    assert Message.objects.get() == world.message
    assert_error(api.get(_detail(world.endpoint)), 404, "not_found")


# --- max_in_flight ---------------------------------------------------------------------

RECEIVER = "https://receiver.example.com/hook"
# Not a cap from 1 to HOOKPOST_ENDPOINT_MAX_IN_FLIGHT_LIMIT (1,000) given as a JSON integer.
BAD_CAPS = [0, -1, -1000, 1001, 10**30, 2.5, 2.0, True, False, "5", "", "ten", "٣", [2], {"n": 2}]


def test_an_endpoint_created_with_a_cap_keeps_it(api, tenant):
    response = api.post(BASE, {"url": RECEIVER, "max_in_flight": 2}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["max_in_flight"] == 2
    endpoint = Endpoint.objects.get(uid=response.json()["id"])
    assert endpoint.max_in_flight == 2
    assert selectors.endpoint_max_in_flight(endpoint=endpoint) == 2
    assert api.get(_detail(endpoint)).json()["max_in_flight"] == 2


def test_an_endpoint_created_without_a_cap_inherits_the_platform_default(api, tenant, settings):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 7

    response = api.post(BASE, {"url": "https://receiver.example.com/hook"}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["max_in_flight"] is None
    endpoint = Endpoint.objects.get(uid=response.json()["id"])
    assert endpoint.max_in_flight is None
    assert selectors.endpoint_max_in_flight(endpoint=endpoint) == 7
    assert api.get(_detail(endpoint)).json()["max_in_flight"] is None


def test_the_cap_may_go_up_to_the_limit(api, tenant, settings):
    response = api.post(BASE, {"url": RECEIVER, "max_in_flight": 1000}, format="json")

    assert response.status_code == 201, response.json()
    assert Endpoint.objects.get().max_in_flight == 1000


def test_a_patched_cap_is_kept_and_null_returns_to_the_default(api, tenant):
    endpoint = EndpointFactory.create(tenant=tenant)

    # when acme caps the endpoint at 3
    response = api.patch(_detail(endpoint), {"max_in_flight": 3}, format="json")

    # then it is stored and answered, and the other settings are untouched
    assert response.status_code == 200, response.json()
    assert response.json()["max_in_flight"] == 3
    endpoint.refresh_from_db()
    assert (endpoint.max_in_flight, endpoint.url) == (3, response.json()["url"])

    # when a PATCH leaves it out, it stays
    assert api.patch(_detail(endpoint), {"description": "x"}, format="json").json()["max_in_flight"] == 3

    # when acme sends null, the endpoint inherits the platform default again
    response = api.patch(_detail(endpoint), {"max_in_flight": None}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["max_in_flight"] is None
    endpoint.refresh_from_db()
    assert endpoint.max_in_flight is None


@pytest.mark.parametrize("cap", BAD_CAPS, ids=repr)
def test_a_bad_cap_is_422_on_create_and_nothing_is_stored(api, tenant, cap):
    before = snapshot()

    response = api.post(BASE, {"url": RECEIVER, "max_in_flight": cap}, format="json")

    details = assert_error(response, 422, "validation_error")
    assert list(details) == ["max_in_flight"], details
    assert snapshot() == before


@pytest.mark.parametrize("cap", BAD_CAPS, ids=repr)
def test_a_bad_cap_is_422_on_patch_and_nothing_changes(api, tenant, cap):
    endpoint = EndpointFactory.create(tenant=tenant, max_in_flight=4)
    before = snapshot()

    response = api.patch(_detail(endpoint), {"max_in_flight": cap, "description": "changed"}, format="json")

    details = assert_error(response, 422, "validation_error")
    assert list(details) == ["max_in_flight"], details
    assert snapshot() == before


def test_the_limit_is_a_setting_read_when_the_cap_is_checked(api, tenant, settings):
    # given an operator who lowered the limit to 50
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT_LIMIT = 50
    endpoint = EndpointFactory.create(tenant=tenant)
    before = snapshot()

    # then 51 is refused on create and on patch, naming the limit, and 50 is accepted
    created = api.post(BASE, {"url": RECEIVER, "max_in_flight": 51}, format="json")
    patched = api.patch(_detail(endpoint), {"max_in_flight": 51}, format="json")
    for response in (created, patched):
        assert "from 1 to 50" in " ".join(assert_error(response, 422, "validation_error")["max_in_flight"])
    assert snapshot() == before
    assert api.patch(_detail(endpoint), {"max_in_flight": 50}, format="json").json()["max_in_flight"] == 50


# --- secrets ---------------------------------------------------------------------------


def test_get_secret_returns_the_current_secret(api, tenant):
    secret = signing.generate_secret()
    endpoint = EndpointFactory.create(tenant=tenant, secret=secret)

    response = api.get(f"{_detail(endpoint)}secret/")

    assert response.status_code == 200
    assert response.json() == {"secret": secret}


def test_rotating_keeps_the_old_secret_signing_for_the_grace_period(api, tenant, monkeypatch):
    # given an endpoint with secret OLD
    old = signing.generate_secret()
    endpoint = EndpointFactory.create(tenant=tenant, secret=old)

    # when acme rotates with an hour of grace
    response = api.post(f"{_detail(endpoint)}rotate-secret/", {"grace_seconds": 3600}, format="json")

    # then a new secret is returned and is now the current one
    assert response.status_code == 200, response.json()
    new = response.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert api.get(f"{_detail(endpoint)}secret/").json() == {"secret": new}
    # and both sign during the grace period, the new one first
    assert selectors.endpoint_signing_secrets(endpoint=endpoint) == [new, old]
    old_row = EndpointSecret.objects.get(endpoint=endpoint, expires_at__isnull=False)
    assert old_row.secret == old  # secrets are encrypted at rest: found by expiry, not by value
    assert timedelta(minutes=59) < old_row.expires_at - timezone.now() <= timedelta(hours=1)

    # and once the grace period is over only the new one signs
    later = timezone.now() + timedelta(hours=1, seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert selectors.endpoint_signing_secrets(endpoint=endpoint) == [new]


def test_rotation_defaults_to_24_hours_of_grace(api, tenant):
    endpoint = EndpointFactory.create(tenant=tenant)
    old = selectors.endpoint_current_secret(endpoint=endpoint)

    response = api.post(f"{_detail(endpoint)}rotate-secret/", format="json")

    assert response.status_code == 200, response.json()
    old_row = EndpointSecret.objects.get(endpoint=endpoint, expires_at__isnull=False)
    assert old_row.secret == old
    left = old_row.expires_at - timezone.now()
    assert timedelta(hours=23, minutes=59) < left <= timedelta(hours=24)


def test_rotating_with_no_grace_retires_the_old_secret_at_once(api, tenant):
    old = signing.generate_secret()
    endpoint = EndpointFactory.create(tenant=tenant, secret=old)

    response = api.post(f"{_detail(endpoint)}rotate-secret/", {"grace_seconds": 0}, format="json")

    assert response.status_code == 200, response.json()
    assert selectors.endpoint_signing_secrets(endpoint=endpoint) == [response.json()["secret"]]


def test_rotating_again_drops_secrets_already_expired(api, tenant):
    endpoint = EndpointFactory.create(tenant=tenant)
    first = api.post(f"{_detail(endpoint)}rotate-secret/", {"grace_seconds": 0}, format="json").json()
    second = api.post(f"{_detail(endpoint)}rotate-secret/", {"grace_seconds": 60}, format="json").json()

    # the original expired at once and is deleted; the first rotation's secret is in grace
    secrets = list(EndpointSecret.objects.filter(endpoint=endpoint).values_list("secret", flat=True))
    assert sorted(secrets) == sorted([first["secret"], second["secret"]])
    assert selectors.endpoint_signing_secrets(endpoint=endpoint) == [second["secret"], first["secret"]]


def test_rotating_to_a_bring_your_own_secret(api, tenant):
    endpoint = EndpointFactory.create(tenant=tenant)
    mine = signing.generate_secret()

    response = api.post(f"{_detail(endpoint)}rotate-secret/", {"secret": mine}, format="json")

    assert response.json() == {"secret": mine}
    assert selectors.endpoint_current_secret(endpoint=endpoint) == mine


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"grace_seconds": SEVEN_DAYS + 1}, "grace_seconds"),
        ({"grace_seconds": -1}, "grace_seconds"),
        ({"grace_seconds": "soon"}, "grace_seconds"),
        ({"secret": "whsec_!!!"}, "secret"),
    ],
)
def test_an_invalid_rotation_changes_nothing(api, tenant, body, field):
    endpoint = EndpointFactory.create(tenant=tenant)
    before = snapshot()

    response = api.post(f"{_detail(endpoint)}rotate-secret/", body, format="json")

    assert assert_error(response, 422, "validation_error")[field]
    assert snapshot() == before


def test_the_longest_grace_period_is_seven_days(api, tenant):
    endpoint = EndpointFactory.create(tenant=tenant)

    response = api.post(f"{_detail(endpoint)}rotate-secret/", {"grace_seconds": SEVEN_DAYS}, format="json")

    assert response.status_code == 200, response.json()
    assert len(selectors.endpoint_signing_secrets(endpoint=endpoint)) == 2
