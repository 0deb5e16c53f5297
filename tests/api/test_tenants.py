"""/api/v1/tenants/: operator-managed tenants; a tenant key reads its own."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deliveries.models import Attempt, Delivery, Message
from tests.api.helpers import assert_error, build_world, snapshot
from tests.factories import TenantFactory
from webhooks.models import ApiKey, Endpoint, EndpointSecret, Tenant


def test_operator_lists_tenants_newest_first(operator_api):
    # given three tenants created one after the other
    now = timezone.now()
    for age, uid in enumerate(["newest", "middle", "oldest"]):
        TenantFactory.create(uid=uid, created_at=now - timedelta(minutes=age))

    # when the operator lists them
    response = operator_api.get("/api/v1/tenants/")

    # then all are listed, newest first, on one page
    assert response.status_code == 200
    body = response.json()
    assert [t["uid"] for t in body["data"]] == ["newest", "middle", "oldest"]
    assert body["next"] is None
    assert set(body["data"][0]) == {"uid", "name", "retention_days", "created_at", "updated_at"}


def test_operator_creates_a_tenant(operator_api):
    # when the operator creates a tenant
    response = operator_api.post(
        "/api/v1/tenants/", {"uid": "initech", "name": "Initech", "retention_days": 7}, format="json"
    )

    # then 201 with the tenant, and it is stored
    assert response.status_code == 201, response.json()
    assert response.json()["uid"] == "initech"
    tenant = Tenant.objects.get(uid="initech")
    assert (tenant.name, tenant.retention_days) == ("Initech", 7)


def test_creating_a_tenant_with_a_taken_uid_is_a_conflict(operator_api, tenant):
    # given acme exists
    before = snapshot()

    # when the operator creates acme again
    response = operator_api.post("/api/v1/tenants/", {"uid": "acme", "name": "Other"}, format="json")

    # then 409 naming the uid, and acme is untouched
    details = assert_error(response, 409, "conflict")
    assert "uid" in details
    assert snapshot() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"uid": "Not A Slug", "name": "X"}, "uid"),
        ({"uid": "-dash-first", "name": "X"}, "uid"),
        ({"uid": "a" * 65, "name": "X"}, "uid"),
        ({"uid": "fine"}, "name"),
        ({"uid": "fine", "name": "X", "retention_days": 0}, "retention_days"),
        ({"uid": "fine", "name": "X", "retention_days": 3651}, "retention_days"),
    ],
)
def test_creating_an_invalid_tenant_is_refused_with_field_details(operator_api, body, field):
    before = snapshot()

    response = operator_api.post("/api/v1/tenants/", body, format="json")

    details = assert_error(response, 422, "validation_error")
    assert details[field], details
    assert snapshot() == before


def test_a_tenant_key_reads_its_own_tenant(api, tenant):
    response = api.get("/api/v1/tenants/acme/")

    assert response.status_code == 200
    assert response.json()["uid"] == "acme"
    assert response.json()["name"] == tenant.name


def test_an_unknown_tenant_is_404_even_for_the_operator(operator_api):
    assert_error(operator_api.get("/api/v1/tenants/nope/"), 404, "not_found")


def test_operator_patches_a_tenant(operator_api, tenant):
    # when the operator renames acme and changes its retention (and tries its uid)
    response = operator_api.patch(
        "/api/v1/tenants/acme/",
        {"name": "Acme Corp", "retention_days": 90, "uid": "renamed"},
        format="json",
    )

    # then the name and retention change, the uid in the path does not
    assert response.status_code == 200, response.json()
    tenant.refresh_from_db()
    assert (tenant.uid, tenant.name, tenant.retention_days) == ("acme", "Acme Corp", 90)
    assert response.json()["name"] == "Acme Corp"


@pytest.mark.parametrize(
    ("body", "field"), [({"retention_days": 0}, "retention_days"), ({"name": ""}, "name")]
)
def test_an_invalid_patch_changes_nothing(operator_api, tenant, body, field):
    before = snapshot()

    response = operator_api.patch("/api/v1/tenants/acme/", body, format="json")

    assert field in assert_error(response, 422, "validation_error")
    assert snapshot() == before


def test_deleting_a_tenant_removes_all_its_data_and_nothing_else(
    operator_api, make_client, tenant, other_tenant, event_type
):
    # given two tenants, each with keys, an endpoint, a message, a delivery and an attempt
    make_client(tenant)
    make_client(other_tenant)
    build_world(tenant, event_type)
    other = build_world(other_tenant, event_type)

    # when the operator deletes acme
    response = operator_api.delete("/api/v1/tenants/acme/")

    # then acme and everything it owned are gone; globex is intact
    assert response.status_code == 204
    assert not Tenant.objects.filter(uid="acme").exists()
    for model in (ApiKey, Endpoint, Message, Delivery):
        owners = set(model.objects.filter(tenant__isnull=False).values_list("tenant_id", flat=True))
        assert owners == {other_tenant.pk}, model
    assert ApiKey.objects.filter(tenant__isnull=True).count() == 1  # the operator's key stays
    assert list(EndpointSecret.objects.values_list("endpoint_id", flat=True)) == [other.endpoint.pk]
    assert list(Attempt.objects.values_list("pk", flat=True)) == [other.attempt.pk]
    assert_error(operator_api.get("/api/v1/tenants/acme/"), 404, "not_found")
