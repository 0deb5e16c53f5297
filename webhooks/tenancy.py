"""Which tenant a request may see.

Foreign tenants and their objects answer 404, never 403, so a key cannot learn
what exists outside its own tenant. Every ``/tenants/{uid}/…`` view derives
from ``TenantScopedView`` and reads only through ``self.tenant``.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request

from webhooks.models import ApiKey, Tenant
from webhooks.permissions import HasApiKey


def tenant_for_key(*, key: ApiKey, uid: str) -> Tenant:
    """The tenant ``uid`` if ``key`` may see it; raises NotFound otherwise."""
    if key.tenant_id is not None:
        if key.tenant is not None and key.tenant.uid == uid:
            return key.tenant
        raise NotFound()
    tenant = Tenant.objects.filter(uid=uid).first()
    if tenant is None:
        raise NotFound()
    return tenant


class TenantScopedView(GenericAPIView[Any]):
    """Base for ``/tenants/{uid}/…`` routes: resolves ``self.tenant`` or 404s."""

    permission_classes = [HasApiKey]
    tenant: Tenant

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Resolve the tenant before the permission check, so a foreign tenant
        # is a 404 even on routes the key could not use anyway (no 403 oracle).
        self.perform_authentication(request)
        if isinstance(request.auth, ApiKey):
            # No id contains NUL, and PostgreSQL refuses to compare text with
            # one (a 500): such a path names nothing.
            if any("\x00" in str(value) for value in kwargs.values()):
                raise NotFound()
            self.tenant = tenant_for_key(key=request.auth, uid=kwargs["uid"])
        super().initial(request, *args, **kwargs)
