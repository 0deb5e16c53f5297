"""Shared by the API tests: the table of routes, a populated tenant, the error
envelope and "nothing changed" assertions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Model
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Attempt, Delivery, Message
from tests.factories import EndpointFactory
from webhooks.models import ApiKey, Endpoint, EndpointSecret, EventType, Tenant

# Every table a request could write to. ApiKey.last_used_at is left out of
# snapshots: authenticating a request may touch it, and that is not a change
# of the tenant's data.
_MODELS: list[type[Model]] = [
    Tenant,
    ApiKey,
    EventType,
    Endpoint,
    Endpoint.event_types.through,
    EndpointSecret,
    Message,
    Delivery,
    Attempt,
]
_VOLATILE: dict[type[Model], set[str]] = {ApiKey: {"last_used_at"}}


def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of every domain table, to compare before and after a request."""
    state: dict[str, list[dict[str, Any]]] = {}
    for model in _MODELS:
        skip = _VOLATILE.get(model, set())
        rows = model._default_manager.order_by("pk").values()
        state[model._meta.label] = [{k: v for k, v in row.items() if k not in skip} for row in rows]
    return state


def counts() -> dict[str, int]:
    return {model._meta.label: model._default_manager.count() for model in _MODELS}


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, list[str]]:
    """Assert the status and the error envelope; return ``details``."""
    assert response.status_code == status, (response.status_code, getattr(response, "content", b""))
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["details"], dict), error
    if code is not None:
        assert error["code"] == code, error
    return error["details"]


def send(client: Any, method: str, path: str, body: Any = None, **extra: Any) -> Any:
    """Call ``client.<method>(path, body)`` as JSON (no body for GET/DELETE)."""
    call = getattr(client, method.lower())
    if method in ("GET", "DELETE"):
        return call(path, **extra)
    return call(path, body if body is not None else {}, format="json", **extra)


@dataclass
class World:
    """One tenant's objects, addressed by their public ids."""

    tenant: Tenant
    event_type: EventType
    endpoint: Endpoint
    message: Message
    delivery: Delivery
    attempt: Attempt

    def ids(self) -> dict[str, str]:
        return {
            "uid": self.tenant.uid,
            "et": self.event_type.name,
            "ep": self.endpoint.uid,
            "msg": self.message.uid,
            "dlv": self.delivery.uid,
        }


def build_world(tenant: Tenant, event_type: EventType) -> World:
    endpoint = EndpointFactory.create(tenant=tenant)
    published = delivery_services.message_publish(
        tenant=tenant,
        new=delivery_services.NewMessage(event_type=event_type.name, payload={"tenant": tenant.uid}),
    )
    delivery = Delivery.objects.get(message=published.message, endpoint=endpoint)
    attempt = Attempt.objects.create(
        delivery=delivery,
        number=1,
        duration_ms=12,
        request_headers={"webhook-id": published.message.uid},
        response_status=500,
        response_body="oops",
        error_class="HTTPStatus",
        error_message="500 Internal Server Error",
    )
    # The delivery as that attempt left it: failed, its retry scheduled, not in
    # flight, so the replay and recover routes have something to act on.
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.FAILED,
        attempt_count=1,
        last_status_code=500,
        last_error="HTTP 500",
        next_attempt_at=timezone.now() + timedelta(minutes=5),
        lease_token=None,
        lease_expires_at=None,
    )
    delivery.refresh_from_db()
    return World(tenant, event_type, endpoint, published.message, delivery, attempt)


ENDPOINT_BODY = {"url": "https://receiver.example.com/hook", "description": "new"}
MESSAGE_BODY = {"event_type": "invoice.paid", "payload": {"amount": 1}}
RECOVER_BODY = {"since": "2000-01-01T00:00:00Z"}


@dataclass(frozen=True)
class Route:
    """One method on one path. ``operator``: needs an operator key to succeed."""

    method: str
    path: str
    body: dict[str, Any] | None
    ok: int
    operator: bool = False

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"

    def url(self, ids: dict[str, str]) -> str:
        return self.path.format(**ids)


ROUTES = [
    Route("GET", "/api/v1/tenants/", None, 200, operator=True),
    Route("POST", "/api/v1/tenants/", {"uid": "initech", "name": "Initech"}, 201, operator=True),
    Route("GET", "/api/v1/tenants/{uid}/", None, 200),
    Route("PATCH", "/api/v1/tenants/{uid}/", {"name": "Renamed"}, 200, operator=True),
    Route("DELETE", "/api/v1/tenants/{uid}/", None, 204, operator=True),
    Route("GET", "/api/v1/event-types/", None, 200),
    Route("POST", "/api/v1/event-types/", {"name": "order.shipped"}, 201, operator=True),
    Route("GET", "/api/v1/event-types/{et}/", None, 200),
    Route("PATCH", "/api/v1/event-types/{et}/", {"description": "Paid."}, 200, operator=True),
    Route("GET", "/api/v1/tenants/{uid}/endpoints/", None, 200),
    Route("POST", "/api/v1/tenants/{uid}/endpoints/", ENDPOINT_BODY, 201),
    Route("GET", "/api/v1/tenants/{uid}/endpoints/{ep}/", None, 200),
    Route("PATCH", "/api/v1/tenants/{uid}/endpoints/{ep}/", {"description": "changed"}, 200),
    Route("DELETE", "/api/v1/tenants/{uid}/endpoints/{ep}/", None, 204),
    Route("GET", "/api/v1/tenants/{uid}/endpoints/{ep}/secret/", None, 200),
    Route("POST", "/api/v1/tenants/{uid}/endpoints/{ep}/rotate-secret/", {}, 200),
    Route("GET", "/api/v1/tenants/{uid}/endpoints/{ep}/health/", None, 200),
    Route("GET", "/api/v1/tenants/{uid}/messages/", None, 200),
    Route("POST", "/api/v1/tenants/{uid}/messages/", MESSAGE_BODY, 202),
    Route("POST", "/api/v1/tenants/{uid}/messages/batch/", {"messages": [MESSAGE_BODY]}, 202),
    Route("GET", "/api/v1/tenants/{uid}/messages/{msg}/", None, 200),
    Route("GET", "/api/v1/tenants/{uid}/deliveries/", None, 200),
    Route("GET", "/api/v1/tenants/{uid}/deliveries/{dlv}/", None, 200),
    Route("POST", "/api/v1/tenants/{uid}/deliveries/{dlv}/replay/", {}, 202),
    Route("POST", "/api/v1/tenants/{uid}/deliveries/replay/", {"ids": ["dlv_unknown"]}, 202),
    Route("POST", "/api/v1/tenants/{uid}/endpoints/{ep}/recover/", RECOVER_BODY, 202),
]
TENANT_ROUTES = [r for r in ROUTES if r.path.startswith("/api/v1/tenants/{uid}/")]
