"""Tenant scoping for the Django admin.

Tenants use Hookpost through the admin, so the admin must keep them apart as
strictly as the API does (invariant 6: a foreign id is a 404). Every admin
class of a tenant-owned model derives from ``TenantScopedAdmin``, which scopes
the one queryset Django's admin reads everything through (``get_queryset``:
change list, object pages, actions, autocomplete of that model, related-field
choices) and turns "not in my queryset" into a 404 instead of Django's
redirect-with-message.

Who sees what:

- a superuser (an operator) sees every tenant;
- any other staff user sees the tenants they hold a ``Membership`` of, and
  nothing else (a staff user without memberships sees empty lists);
- a membership's role decides what they may do there: ``admin`` manages
  (edit endpoints, replay, rotate secrets, discard dead letters), ``viewer``
  only reads. Django's model permissions (granted by the tenant-users group,
  see ``webhooks.tenant_users``) still apply on top.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest

from webhooks.admin_changelist import StrictQueryAdmin
from webhooks.models import Endpoint, Membership, Tenant

_CACHE_ATTR = "_hookpost_tenant_roles"


def tenant_roles(request: HttpRequest) -> dict[int, str] | None:
    """The user's roles by tenant id, or None for a superuser (every tenant).

    Read once per request and cached on it: every admin page asks several
    times (queryset, permissions, filter choices).
    """
    user = request.user
    if getattr(user, "is_superuser", False):
        return None
    cached: dict[int, str] | None = getattr(request, _CACHE_ATTR, None)
    if cached is None:
        if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
            cached = {}
        else:
            user_id = cast(int, user.pk)  # an authenticated user is saved: it has a pk
            cached = dict(Membership.objects.filter(user_id=user_id).values_list("tenant_id", "role"))
        setattr(request, _CACHE_ATTR, cached)
    return cached


def visible_tenant_ids(request: HttpRequest) -> frozenset[int] | None:
    """Tenants the user may see; None means all (superuser)."""
    roles = tenant_roles(request)
    return None if roles is None else frozenset(roles)


def managed_tenant_ids(request: HttpRequest) -> frozenset[int] | None:
    """Tenants the user may change (role ``admin``); None means all (superuser)."""
    roles = tenant_roles(request)
    if roles is None:
        return None
    return frozenset(tid for tid, role in roles.items() if role == Membership.Role.ADMIN)


def can_manage_tenant(request: HttpRequest, tenant_id: int | None) -> bool:
    """True if the user may change things of ``tenant_id`` (None: of any tenant)."""
    managed = managed_tenant_ids(request)
    if managed is None:
        return True
    return bool(managed) if tenant_id is None else tenant_id in managed


def scope_queryset(qs: QuerySet[Any], tenant_path: str, tenant_ids: Iterable[int] | None) -> QuerySet[Any]:
    """``qs`` limited to rows whose ``tenant_path`` is one of ``tenant_ids`` (None: no limit)."""
    if tenant_ids is None:
        return qs
    ids = sorted(tenant_ids)
    if not ids:
        return qs.none()
    if len(ids) == 1:
        # An equality lets PostgreSQL walk the (tenant, created DESC) index in
        # order; an IN list of one is planned the same, but say it plainly.
        return qs.filter(**{tenant_path: ids[0]})
    return qs.filter(**{f"{tenant_path}__in": ids})


def visible_tenants(request: HttpRequest) -> QuerySet[Tenant]:
    return scope_queryset(Tenant.objects.all(), "pk", visible_tenant_ids(request))


def managed_tenants(request: HttpRequest) -> QuerySet[Tenant]:
    return scope_queryset(Tenant.objects.all(), "pk", managed_tenant_ids(request))


def visible_endpoints(request: HttpRequest) -> QuerySet[Endpoint]:
    return scope_queryset(Endpoint.objects.all(), "tenant_id", visible_tenant_ids(request))


class TenantScopedAdmin(StrictQueryAdmin):
    """A ModelAdmin whose every read is limited to the user's tenants.

    ``tenant_path`` is the lookup from the model to its tenant's id
    (``"tenant_id"``, ``"delivery__tenant_id"``, ``"pk"`` for Tenant itself).
    Subclasses implement ``tenant_id_of(obj)`` when the path crosses a
    relation, so object-level permission checks need no query.

    Contract:
    - ``get_queryset`` returns only rows of visible tenants;
    - ``get_object`` raises Http404 for ids outside it (foreign or missing),
      so change, delete, history and custom object views answer 404, never a
      redirect or 403 that would tell a foreign id exists;
    - change/add/delete permissions also require the ``admin`` role in the
      object's tenant (in some tenant when no object is given);
    - foreign-key and many-to-many choices to Tenant or Endpoint are scoped.
    """

    tenant_path = "tenant_id"

    # -- reads --------------------------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return scope_queryset(super().get_queryset(request), self.tenant_path, visible_tenant_ids(request))

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such object.")
        return obj

    def tenant_id_of(self, obj: Model) -> int:
        return int(getattr(obj, self.tenant_path))

    # -- permissions ----------------------------------------------------------------
    def _may_manage(self, request: HttpRequest, obj: Model | None) -> bool:
        return can_manage_tenant(request, None if obj is None else self.tenant_id_of(obj))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and self._may_manage(request, None)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return super().has_change_permission(request, obj) and self._may_manage(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return super().has_delete_permission(request, obj) and self._may_manage(request, obj)

    # -- related choices --------------------------------------------------------------
    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.related_model is Tenant:
            kwargs["queryset"] = managed_tenants(request)
        elif db_field.related_model is Endpoint:
            kwargs["queryset"] = visible_endpoints(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.related_model is Endpoint:
            kwargs["queryset"] = visible_endpoints(request)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class OperatorOnlyAdmin(StrictQueryAdmin):
    """Platform-wide rows (API keys, memberships): superusers only.

    Everyone else gets an empty queryset, so even a staff user who was given
    the model permission by mistake sees nothing and foreign URLs are 404.
    """

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = super().get_queryset(request)
        return qs if getattr(request.user, "is_superuser", False) else qs.none()

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such object.")
        return obj

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(getattr(request.user, "is_superuser", False))

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return bool(getattr(request.user, "is_superuser", False))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(getattr(request.user, "is_superuser", False))

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return bool(getattr(request.user, "is_superuser", False))

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return bool(getattr(request.user, "is_superuser", False))
