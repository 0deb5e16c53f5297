"""Fixtures of the admin tests: two tenants with a little history each, and
logged-in clients for a tenant admin of each, a viewer and an operator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from deliveries.models import Attempt, Delivery, Message
from tests.factories import EndpointFactory, EventTypeFactory, TenantFactory
from webhooks.models import Endpoint, EventType, Membership, Tenant
from webhooks.tenant_users import tenant_user_create


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "perf: large-data admin tests (100,000 rows), bounded to about a minute"
    )


@dataclass
class History:
    """One tenant's rows: an endpoint, a delivered message, a dead letter, their attempts."""

    tenant: Tenant
    endpoint: Endpoint
    message: Message
    delivered: Delivery
    dead: Delivery
    attempt: Attempt
    dead_attempt: Attempt


def make_delivery(
    tenant: Tenant,
    endpoint: Endpoint,
    event_type: EventType,
    *,
    status: str = Delivery.Status.SUCCEEDED,
    payload: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    created_at: Any = None,
) -> Delivery:
    created_at = created_at or timezone.now()
    message = Message.objects.create(
        tenant=tenant,
        event_type=event_type,
        payload=payload or {"n": 1},
        idempotency_key=idempotency_key,
        created_at=created_at,
    )
    return Delivery.objects.create(
        tenant=tenant,
        message=message,
        endpoint=endpoint,
        event_type=event_type,
        status=status,
        attempt_count=1,
        created_at=created_at,
        finished_at=None if status in (Delivery.Status.PENDING, Delivery.Status.FAILED) else created_at,
    )


def make_attempt(
    delivery: Delivery, *, number: int = 1, status: int | None = 200, body: str = "ok"
) -> Attempt:
    return Attempt.objects.create(
        delivery=delivery,
        number=number,
        duration_ms=42,
        request_headers={"webhook-id": delivery.message.uid, "webhook-signature": "v1,[redacted]"},
        response_status=status,
        response_headers={"content-type": "text/plain"},
        response_body=body,
        error_class="" if status and status < 300 else "HTTPStatus",
        error_message="" if status and status < 300 else f"HTTP {status}",
    )


def build_history(uid: str, event_type: EventType) -> History:
    tenant = TenantFactory.create(uid=uid, name=f"{uid.title()} Inc.")
    endpoint = EndpointFactory.create(tenant=tenant, url=f"https://{uid}.example.com/hooks")
    delivered = make_delivery(tenant, endpoint, event_type, idempotency_key=f"{uid}-order-1")
    dead = make_delivery(tenant, endpoint, event_type, status=Delivery.Status.DEAD)
    return History(
        tenant=tenant,
        endpoint=endpoint,
        message=delivered.message,
        delivered=delivered,
        dead=dead,
        attempt=make_attempt(delivered),
        dead_attempt=make_attempt(dead, status=500, body="boom"),
    )


@pytest.fixture
def event_type(db: None) -> EventType:
    return EventTypeFactory.create(name="invoice.paid")


@pytest.fixture
def a(event_type: EventType) -> History:
    return build_history("acme", event_type)


@pytest.fixture
def b(event_type: EventType) -> History:
    return build_history("globex", event_type)


@pytest.fixture
def login() -> Callable[..., Client]:
    """``login(tenant, role=...)``: a client logged in as a new tenant user of ``tenant``."""
    counter = iter(range(1000))

    def make(*tenants: Tenant, role: str = Membership.Role.ADMIN) -> Client:
        user = tenant_user_create(
            username=f"user{next(counter)}-{tenants[0].uid}",
            tenants=list(tenants),
            role=role,
            password="pw-123456!",
        ).user
        client = Client()
        client.force_login(cast(User, user))  # AUTH_USER_MODEL is auth.User
        return client

    return make


@pytest.fixture
def client_a(login: Callable[..., Client], a: History) -> Client:
    return login(a.tenant)


@pytest.fixture
def client_b(login: Callable[..., Client], b: History) -> Client:
    return login(b.tenant)


@pytest.fixture
def operator(db: None) -> Client:
    user = get_user_model().objects.create_superuser("op", "op@example.com", "pw-123456!")
    client = Client()
    client.force_login(user)
    return client


def recent(hours: float) -> Any:
    return timezone.now() - timedelta(hours=hours)
