"""``Authorization: Bearer hp_…`` authentication for the REST API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from webhooks.models import ApiKey
from webhooks.selectors import api_key_get_active
from webhooks.services import api_key_mark_used


class ApiKeyAuthentication(BaseAuthentication):
    """Sets ``request.auth`` (and ``request.user``) to the ApiKey.

    No header -> unauthenticated (the permission answers 401); a malformed
    header or an unknown, revoked or expired key -> 401.
    """

    def authenticate(self, request: Request) -> tuple[ApiKey, ApiKey] | None:
        parts = get_authorization_header(request).split()
        if not parts:
            return None
        if parts[0].lower() != b"bearer" or len(parts) != 2:
            raise AuthenticationFailed("Use the header 'Authorization: Bearer <api key>'.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise AuthenticationFailed("The API key is invalid, expired or revoked.") from exc
        key = api_key_get_active(raw=raw)
        if key is None:
            raise AuthenticationFailed("The API key is invalid, expired or revoked.")
        api_key_mark_used(key=key)
        return key, key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="hookpost"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "webhooks.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An API key, hp_…"}
