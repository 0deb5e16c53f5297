"""``create_tenant_user`` and the tenant-users group."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from tests.factories import TenantFactory
from webhooks.models import Membership
from webhooks.tenant_users import TENANT_USER_PERMISSIONS, TENANT_USERS_GROUP

pytestmark = pytest.mark.django_db


def test_command_creates_a_staff_user_with_a_membership() -> None:
    TenantFactory.create(uid="acme")
    out = io.StringIO()
    call_command("create_tenant_user", "alice", "--tenant", "acme", "--email", "a@example.com", stdout=out)
    user = get_user_model().objects.get(username="alice")
    assert user.is_staff and not user.is_superuser
    assert user.groups.get().name == TENANT_USERS_GROUP
    assert user.groups.get().permissions.count() == len(TENANT_USER_PERMISSIONS)
    assert Membership.objects.get(user=user).role == "admin"
    password = out.getvalue().split("Password (shown once): ")[1].strip()
    client = Client()
    assert client.login(username="alice", password=password)
    assert client.get(reverse("admin:deliveries_delivery_changelist")).status_code == 200
    assert client.get(reverse("admin:auth_user_changelist")).status_code == 403


def test_command_adds_tenants_and_roles_to_an_existing_user() -> None:
    TenantFactory.create(uid="acme")
    TenantFactory.create(uid="globex")
    call_command(
        "create_tenant_user", "bob", "--tenant", "acme", "--password", "pw-123456!", stdout=io.StringIO()
    )
    out = io.StringIO()
    call_command("create_tenant_user", "bob", "--tenant", "globex", "--role", "viewer", stdout=out)
    assert "Updated" in out.getvalue() and "Password" not in out.getvalue()
    roles = dict(Membership.objects.filter(user__username="bob").values_list("tenant__uid", "role"))
    assert roles == {"acme": "admin", "globex": "viewer"}
    assert Client().login(username="bob", password="pw-123456!")


def test_command_refuses_unknown_tenants_and_superusers() -> None:
    TenantFactory.create(uid="acme")
    with pytest.raises(CommandError, match="Unknown tenant"):
        call_command("create_tenant_user", "carol", "--tenant", "nope")
    get_user_model().objects.create_superuser("root", "r@example.com", "pw-123456!")
    with pytest.raises(CommandError, match="superuser"):
        call_command("create_tenant_user", "root", "--tenant", "acme")
