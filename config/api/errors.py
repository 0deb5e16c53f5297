"""The API's error envelope.

Every error the API returns has the shape
``{"error": {"code": "<snake_case>", "message": "<sentence>", "details": {...}}}``.
DRF validation errors become 422 with ``details`` mapping a field path
(``messages.3.payload``) to its messages; malformed JSON stays 400. While
PostgreSQL is unreachable every path answers 503 with ``Retry-After`` (the
envelope under /api/, a plain page elsewhere), which clients retry on.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response

from webhooks.errors import Conflict, Invalid, PayloadTooLarge, ServiceError

logger = logging.getLogger(__name__)

# SQLSTATEs of an OperationalError that a retry later can get past: the connection
# failed or was dropped (class 08), the server is shutting down or starting (57P01-03),
# too many connections (53300), a deadlock or a serialization failure (40P01, 40001).
# Other OperationalErrors (disk full, a statement too complex) fail again: 500.
_TRANSIENT_SQLSTATES = ("57P01", "57P02", "57P03", "53300", "40P01", "40001")


def database_unavailable(exc: BaseException | None) -> bool:
    """Whether ``exc`` says the database is unreachable or busy for now: answer 503."""
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    # psycopg's error is the cause; one raised while connecting has no SQLSTATE.
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _TRANSIENT_SQLSTATES


# Long enough for a restart or a failover, short enough that clients come back soon.
RETRY_AFTER_SECONDS = 5

_SERVICE_STATUS: dict[type[ServiceError], int] = {
    Invalid: status.HTTP_422_UNPROCESSABLE_ENTITY,
    Conflict: status.HTTP_409_CONFLICT,
    PayloadTooLarge: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
}

_CODES: list[tuple[type[exceptions.APIException], str]] = [
    (exceptions.NotAuthenticated, "unauthenticated"),
    (exceptions.AuthenticationFailed, "unauthenticated"),
    (exceptions.PermissionDenied, "forbidden"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.ParseError, "malformed_request"),
    (exceptions.Throttled, "rate_limited"),
]


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


def envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def flatten_details(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into ``{"a.0.b": ["message", ...]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "non_field_errors" if key == "non_field_errors" and not prefix else str(key)
            out.update(flatten_details(value, f"{prefix}.{name}" if prefix else name))
    elif isinstance(detail, list) and any(isinstance(item, (dict, list)) for item in detail):
        for index, value in enumerate(detail):
            if value:
                out.update(flatten_details(value, f"{prefix}.{index}" if prefix else str(index)))
    elif isinstance(detail, list):
        out[prefix or "non_field_errors"] = [str(item) for item in detail]
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


def _unavailable_envelope() -> dict[str, Any]:
    return envelope("service_unavailable", "The service is temporarily unavailable; retry later.")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler producing the envelope; an unreachable database is 503,
    unknown errors stay 500."""
    if database_unavailable(exc):
        logger.warning("database unavailable: %s: %s", type(exc).__name__, exc, exc_info=exc)
        return Response(
            _unavailable_envelope(),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, ServiceError):
        return Response(envelope(exc.code, exc.message, exc.details), status=_SERVICE_STATUS[type(exc)])
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            envelope("validation_error", "The request is invalid.", flatten_details(exc.detail)),
            status=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    if not isinstance(exc, exceptions.APIException):
        return None
    code = exc.default_code if isinstance(exc, RequestTooLarge) else "error"
    for klass, name in _CODES:
        if isinstance(exc, klass):
            code = name
            break
    message = str(exc.detail) if not isinstance(exc.detail, (dict, list)) else "Request failed."
    headers: dict[str, str] = {}
    # Set by DRF on the exceptions that carry them (authentication, throttling).
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        headers["WWW-Authenticate"] = auth_header
    wait = getattr(exc, "wait", None)
    if wait:
        headers["Retry-After"] = str(int(wait))
    return Response(envelope(code, message), status=exc.status_code, headers=headers)


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404: the envelope for API paths, Django's page for the admin and the rest."""
    if not request.path.startswith("/api/"):
        return defaults.page_not_found(request, exception or Http404())
    return JsonResponse(envelope("not_found", "Not found."), status=404)


_UNAVAILABLE_PAGE = (
    "<!doctype html><title>Service unavailable</title><h1>Service unavailable</h1>"
    "<p>The database cannot be reached right now. Please try again in a few seconds.</p>"
)


def json_server_error(request: HttpRequest) -> HttpResponse:
    """handler500, for errors raised outside DRF's views (middleware, the admin): 503 with
    ``Retry-After`` when the database is unreachable, else 500; the envelope for API paths.

    Django calls it while handling the exception, so ``sys.exc_info()`` names it.
    """
    api = request.path.startswith("/api/")
    if database_unavailable(sys.exc_info()[1]):
        response: HttpResponse = (
            JsonResponse(_unavailable_envelope(), status=503)
            if api
            else HttpResponse(_UNAVAILABLE_PAGE, status=503, content_type="text/html; charset=utf-8")
        )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if not api:
        return defaults.server_error(request)
    return JsonResponse(
        envelope("internal_error", "Something went wrong on our side; it has been logged."),
        status=500,
    )
