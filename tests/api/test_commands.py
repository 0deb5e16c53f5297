"""Management commands create_tenant and create_api_key, used against the API."""

from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from tests.api.helpers import assert_error
from webhooks.models import ApiKey, Tenant


def _run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.mark.django_db
def test_create_tenant_creates_it():
    out, _ = _run("create_tenant", "initech", "--name", "Initech Inc")

    tenant = Tenant.objects.get(uid="initech")
    assert tenant.name == "Initech Inc"
    assert "initech" in out


@pytest.mark.django_db
def test_create_tenant_names_it_after_its_uid_by_default():
    _run("create_tenant", "initech")

    assert Tenant.objects.get(uid="initech").name == "initech"


@pytest.mark.parametrize("uid", ["Not_A_Slug", "acme"])
def test_create_tenant_refuses_a_bad_or_taken_uid(tenant, uid):
    with pytest.raises(CommandError):
        _run("create_tenant", uid)

    assert list(Tenant.objects.values_list("uid", flat=True)) == ["acme"]


@pytest.mark.django_db
def test_a_printed_tenant_key_works_for_its_tenant_only():
    # given two tenants made with the command
    _run("create_tenant", "initech")
    _run("create_tenant", "hooli")

    # when a key is created for initech
    out, _ = _run("create_api_key", "--tenant", "initech", "--name", "billing")
    raw = out.strip()

    # then the printed key is stored only as its hash, for initech
    key = ApiKey.objects.get()
    assert (key.tenant.uid, key.name) == ("initech", "billing")
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str(ApiKey.objects.filter(pk=key.pk).values().get())
    # and it works against the API for initech, not for hooli or operator routes
    client = _client(raw)
    assert client.get("/api/v1/tenants/initech/").status_code == 200
    assert_error(client.get("/api/v1/tenants/hooli/"), 404, "not_found")
    assert_error(client.get("/api/v1/tenants/"), 403, "forbidden")


@pytest.mark.django_db
def test_a_printed_operator_key_manages_tenants():
    out, _ = _run("create_api_key", "--operator")
    client = _client(out.strip())

    response = client.post("/api/v1/tenants/", {"uid": "initech", "name": "Initech"}, format="json")

    assert response.status_code == 201, response.json()
    assert Tenant.objects.filter(uid="initech").exists()
    assert ApiKey.objects.get().tenant is None


@pytest.mark.django_db
def test_create_api_key_for_an_unknown_tenant_fails_and_creates_nothing():
    with pytest.raises(CommandError, match="nope"):
        _run("create_api_key", "--tenant", "nope")

    assert ApiKey.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("args", [(), ("--tenant", "acme", "--operator")])
def test_create_api_key_needs_exactly_one_scope(args):
    with pytest.raises(CommandError):
        _run("create_api_key", *args)

    assert ApiKey.objects.count() == 0
