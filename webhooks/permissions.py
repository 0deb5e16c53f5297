"""Who may call what. 403 is for valid keys asking for operator actions;
which tenant a key may see is ``webhooks.tenancy``'s job (foreign -> 404)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from webhooks.models import ApiKey


class HasApiKey(BasePermission):
    """Any valid API key."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ApiKey)


class IsOperator(BasePermission):
    """Operator keys only."""

    message = "This needs an operator API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ApiKey) and request.auth.is_operator


class IsOperatorOrReadOnly(BasePermission):
    message = "Changing this needs an operator API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, ApiKey):
            return False
        return request.method in SAFE_METHODS or request.auth.is_operator
