"""Tenant users: staff accounts that use the admin for their own tenants only.

A tenant user is a Django user with ``is_staff`` (so the admin lets them in),
in the ``TENANT_USERS_GROUP`` group (the model permissions the tenant admin
needs, nothing on users, groups, API keys or memberships), and with one
``Membership`` per tenant. What they see is decided by the memberships
(``webhooks.admin_scoping``); what they may change by each membership's role.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group, Permission
from django.db import transaction
from django.db.models import Q

from webhooks.errors import Invalid
from webhooks.models import Membership, Tenant

TENANT_USERS_GROUP = "Hookpost tenant users"

# (app label, codename). Viewing covers the history; changing endpoints is
# further limited to the ``admin`` role by the admin classes.
TENANT_USER_PERMISSIONS: tuple[tuple[str, str], ...] = (
    ("webhooks", "view_tenant"),
    ("webhooks", "view_eventtype"),
    ("webhooks", "view_endpoint"),
    ("webhooks", "add_endpoint"),
    ("webhooks", "change_endpoint"),
    ("webhooks", "delete_endpoint"),
    ("deliveries", "view_message"),
    ("deliveries", "view_delivery"),
    ("deliveries", "view_attempt"),
    ("deliveries", "view_deadletter"),
)


@dataclass(frozen=True)
class TenantUser:
    """Result of ``tenant_user_create``; ``password`` is set only when one was generated."""

    user: AbstractUser
    created: bool
    password: str | None


def tenant_users_group() -> Group:
    """The tenant-users group with exactly ``TENANT_USER_PERMISSIONS`` (created or repaired)."""
    group, _ = Group.objects.get_or_create(name=TENANT_USERS_GROUP)
    wanted = Q()
    for app_label, codename in TENANT_USER_PERMISSIONS:
        wanted |= Q(content_type__app_label=app_label, codename=codename)
    permissions = list(Permission.objects.filter(wanted))
    if len(permissions) != len(TENANT_USER_PERMISSIONS):
        # Permissions are created after migrate; a fresh database without
        # them would silently give tenant users nothing.
        raise RuntimeError("Model permissions are missing; run `manage.py migrate` first.")
    group.permissions.set(permissions)
    return group


def tenant_user_create(
    *,
    username: str,
    tenants: list[Tenant],
    role: str = Membership.Role.ADMIN,
    email: str = "",
    password: str | None = None,
) -> TenantUser:
    """Create (or extend) a tenant user with a membership of each of ``tenants``.

    An existing user keeps their password unless ``password`` is given, and
    existing memberships get ``role``. A new user without ``password`` gets a
    random one, returned once in the result. Raises Invalid for an unknown
    role, no tenants, or a superuser (operators need no memberships).
    """
    if role not in Membership.Role.values:
        raise Invalid("The role is invalid.", {"role": [f"Use one of {', '.join(Membership.Role.values)}."]})
    if not tenants:
        raise Invalid("A tenant user needs at least one tenant.", {"tenant": ["Give at least one tenant."]})
    user_model = get_user_model()
    generated = None
    with transaction.atomic():
        user, created = user_model.objects.get_or_create(username=username, defaults={"email": email})
        if user.is_superuser:
            raise Invalid("This user is a superuser and already sees every tenant.", {"username": [username]})
        if created and password is None:
            generated = password = secrets.token_urlsafe(16)
        if password is not None:
            user.set_password(password)
        if email:
            user.email = email
        user.is_staff = True
        user.save()
        user.groups.add(tenant_users_group())
        for tenant in tenants:
            Membership.objects.update_or_create(user=user, tenant=tenant, defaults={"role": role})
    return TenantUser(user=user, created=created, password=generated)
