"""Management commands create_tenant and create_api_key, used against the API."""

from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from tests.api.helpers import assert_error
from webhooks import services
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


def _demo_messages(raw: str) -> int:
    return _client(raw).get("/api/v1/tenants/demo/messages/").status_code


@pytest.mark.django_db
def test_seed_demo_reuses_the_kept_key_across_runs(tmp_path):
    key_file = tmp_path / "demo-api-key"
    _run("seed_demo", "--key-file", str(key_file), "--secret-file", str(tmp_path / "secrets"))
    first = key_file.read_text().strip()

    out, _ = _run("seed_demo", "--key-file", str(key_file), "--secret-file", str(tmp_path / "secrets"))

    assert key_file.read_text().strip() == first
    assert f"API key (reused): {first}" in out
    assert ApiKey.objects.filter(tenant__uid="demo", revoked_at__isnull=True).count() == 1
    assert _demo_messages(first) == 200


@pytest.mark.django_db
def test_seed_demo_replaces_a_revoked_kept_key_and_revokes_every_other_demo_key(tmp_path):
    key_file = tmp_path / "demo-api-key"
    _run("seed_demo", "--key-file", str(key_file))
    first = key_file.read_text().strip()
    _run("seed_demo")  # by hand, without the file: a second demo key
    ApiKey.objects.filter(key_hash=hashlib.sha256(first.encode()).hexdigest()).update(
        revoked_at=timezone.now()
    )

    out, _ = _run("seed_demo", "--key-file", str(key_file))

    new = key_file.read_text().strip()
    assert new != first and f"API key (new): {new}" in out
    assert _demo_messages(new) == 200
    assert _demo_messages(first) == 401
    assert ApiKey.objects.filter(tenant__uid="demo", revoked_at__isnull=True).count() == 1


@pytest.mark.django_db
def test_seed_demo_ignores_a_kept_key_of_another_tenant(tmp_path):
    initech = services.tenant_create(uid="initech", name="Initech")
    _, raw = services.api_key_create(tenant=initech, name="make run demo")
    key_file = tmp_path / "demo-api-key"
    key_file.write_text(raw + "\n")

    out, _ = _run("seed_demo", "--key-file", str(key_file))

    new = key_file.read_text().strip()
    assert new != raw and "API key (new)" in out
    assert _demo_messages(new) == 200
    assert ApiKey.objects.get(key_hash=hashlib.sha256(raw.encode()).hexdigest()).revoked_at is None
