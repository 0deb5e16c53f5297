"""Authentication and authorization on every route: bearer keys, 401 and 403."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.api.helpers import ROUTES, Route, assert_error, send, snapshot
from webhooks import services
from webhooks.models import ApiKey

OPERATOR_ROUTES = [r for r in ROUTES if r.operator]


def _client_for(route: Route, make_client, world) -> tuple[APIClient, ApiKey, str]:
    """A client with the kind of key that may use ``route``."""
    keyed = make_client(None if route.operator else world.tenant)
    return keyed.client, keyed.key, keyed.raw


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_every_route_succeeds_with_a_valid_key(route, make_client, world):
    # given a key allowed on the route
    client, _, _ = _client_for(route, make_client, world)

    # when it calls the route
    response = send(client, route.method, route.url(world.ids()), route.body)

    # then the route answers its success status
    assert response.status_code == route.ok, response.content


CREDENTIALS = ["none", "garbage", "not_bearer", "bearer_without_key", "revoked", "expired"]


@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_every_route_refuses_missing_or_bad_keys(route, credentials, make_client, world):
    # given a request without a usable key (for revoked/expired: the very kind
    # of key that succeeds on this route in the test above)
    client, key, raw = _client_for(route, make_client, world)
    if credentials == "none":
        client = APIClient()
    elif credentials == "garbage":
        client.credentials(HTTP_AUTHORIZATION="Bearer hp_" + "x" * 43)
    elif credentials == "not_bearer":
        client.credentials(HTTP_AUTHORIZATION=f"Basic {raw}")
    elif credentials == "bearer_without_key":
        client.credentials(HTTP_AUTHORIZATION="Bearer")
    elif credentials == "revoked":
        services.api_key_revoke(key=key)
    elif credentials == "expired":
        ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    before = snapshot()

    # when it calls the route
    response = send(client, route.method, route.url(world.ids()), route.body)

    # then 401 in the error envelope, with a challenge, and nothing changed
    assert_error(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert snapshot() == before


def test_a_revoked_key_stops_working_at_once(make_client, tenant):
    # given a key that works
    keyed = make_client(tenant)
    assert keyed.client.get("/api/v1/tenants/acme/").status_code == 200

    # when it is revoked
    services.api_key_revoke(key=keyed.key)

    # then it gets 401 and stays revoked
    assert_error(keyed.client.get("/api/v1/tenants/acme/"), 401, "unauthenticated")
    assert ApiKey.objects.get(pk=keyed.key.pk).revoked_at is not None


def test_a_key_works_until_it_expires(tenant):
    # given a key expiring in an hour
    key, raw = services.api_key_create(tenant=tenant, expires_at=timezone.now() + timedelta(hours=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    # then it works now
    assert client.get("/api/v1/tenants/acme/").status_code == 200

    # and once its expiry has passed it gets 401
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(client.get("/api/v1/tenants/acme/"), 401, "unauthenticated")


@pytest.mark.parametrize("operator", [False, True], ids=["tenant_key", "operator_key"])
def test_api_keys_are_stored_only_as_their_sha256(operator, tenant):
    # when a key is created
    key, raw = services.api_key_create(tenant=None if operator else tenant, name="ci")

    # then no column of its row holds the raw key, only its SHA-256 and a short prefix
    row = ApiKey.objects.filter(pk=key.pk).values().get()
    for column, value in row.items():
        assert raw not in str(value), column
    assert row["key_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith("hp_") and raw.startswith(row["prefix"])
    assert len(row["prefix"]) <= 10 < len(raw)
    # and the key is found by its hash alone
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    path = "/api/v1/tenants/" if operator else "/api/v1/tenants/acme/"
    assert client.get(path).status_code == 200


def test_using_a_key_records_when_it_was_last_used(make_client, tenant):
    # given a key never used
    keyed = make_client(tenant)
    assert keyed.key.last_used_at is None

    # when it calls the API
    keyed.client.get("/api/v1/tenants/acme/")

    # then its last use is recorded
    assert ApiKey.objects.get(pk=keyed.key.pk).last_used_at is not None


@pytest.mark.parametrize("route", OPERATOR_ROUTES, ids=lambda r: r.name)
def test_a_tenant_key_gets_403_on_operator_only_routes(route, api, world):
    # given a tenant key (its own tenant's uid in the path where there is one)
    before = snapshot()

    # when it calls an operator-only route
    response = send(api, route.method, route.url(world.ids()), route.body)

    # then 403 and nothing changed
    assert_error(response, 403, "forbidden")
    assert snapshot() == before


def test_a_tenant_key_may_read_its_own_tenant_and_the_event_types(api, world):
    assert api.get("/api/v1/tenants/acme/").json()["uid"] == "acme"
    assert [et["name"] for et in api.get("/api/v1/event-types/").json()["data"]] == ["invoice.paid"]
    assert api.get("/api/v1/event-types/invoice.paid/").status_code == 200


def test_an_operator_key_may_use_any_tenants_routes(operator_api, world):
    # an operator key acts for every tenant
    response = operator_api.get(f"/api/v1/tenants/acme/endpoints/{world.endpoint.uid}/")

    assert response.status_code == 200
    assert response.json()["id"] == world.endpoint.uid
