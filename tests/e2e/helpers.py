"""Shared steps of the end-to-end tests: register endpoints and publish through
the real API, wait (bounded) for database state, and the ledger check that
nothing accepted was lost."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from rest_framework.test import APIClient

from deliveries.models import Attempt, Delivery
from tests.e2e.receiver import Receiver
from webhooks.models import Endpoint, EventType, Tenant

T = TypeVar("T")


@dataclass(frozen=True)
class Registered:
    """An endpoint registered through the API, with the receiver path it posts to."""

    uid: str
    path: str
    secret: str


def register_endpoint(
    api: APIClient, tenant: Tenant, receiver: Receiver, path: str, **fields: Any
) -> Registered:
    """``POST /endpoints/`` for ``receiver``'s ``path``; ``fields`` go in the request body."""
    response = api.post(
        f"/api/v1/tenants/{tenant.uid}/endpoints/", {"url": receiver.url(path), **fields}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    return Registered(uid=body["id"], path=path, secret=body["secret"])


def publish(api: APIClient, tenant: Tenant, event_type: EventType, payload: dict[str, Any]) -> str:
    """``POST /messages/``; returns the accepted message id (the ``webhook-id``)."""
    response = api.post(
        f"/api/v1/tenants/{tenant.uid}/messages/",
        {"event_type": event_type.name, "payload": payload},
        format="json",
    )
    assert response.status_code == 202, response.json()
    return str(response.json()["id"])


def wait_until(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def delivery_of(message_uid: str, endpoint_uid: str) -> Delivery:
    return Delivery.objects.get(message__uid=message_uid, endpoint__uid=endpoint_uid)


def wait_for_status(message_uid: str, endpoint_uid: str, status: str, timeout: float = 20.0) -> Delivery:
    def probe() -> Delivery | None:
        delivery = delivery_of(message_uid, endpoint_uid)
        return delivery if delivery.status == status else None

    try:
        return wait_until(probe, timeout, f"delivery of {message_uid} to {endpoint_uid} to be {status}")
    except AssertionError:
        delivery = delivery_of(message_uid, endpoint_uid)
        raise AssertionError(
            f"delivery {delivery.uid} is {delivery.status} (attempts {delivery.attempt_count}, "
            f"last error {delivery.last_error!r}), not {status} after {timeout:g} s"
        ) from None


def attempts_of(delivery: Delivery) -> list[Attempt]:
    return list(Attempt.objects.filter(delivery=delivery).order_by("number"))


def assert_ledger(
    receiver: Receiver, messages: Iterable[str], endpoints: Iterable[Registered], timeout: float = 30.0
) -> None:
    """Nothing accepted was lost: every (message, endpoint) pair has its Delivery,
    the Delivery reached ``succeeded``, and the receiver got that ``webhook-id`` at
    the endpoint's path at least once."""
    messages, endpoints = list(messages), list(endpoints)
    expected = {(m, e.uid) for m in messages for e in endpoints}

    def unfinished() -> set[tuple[str, str]]:
        done = set(
            Delivery.objects.filter(message__uid__in=messages, status=Delivery.Status.SUCCEEDED).values_list(
                "message__uid", "endpoint__uid"
            )
        )
        return expected - done

    try:
        wait_until(lambda: not unfinished(), timeout, "every delivery to succeed", interval=0.1)
    except AssertionError:
        missing = sorted(unfinished())
        states = {
            (d.message.uid, d.endpoint.uid): (d.status, d.attempt_count, d.last_error)
            for d in Delivery.objects.filter(message__uid__in=messages).select_related("message", "endpoint")
        }
        raise AssertionError(
            f"{len(missing)} of {len(expected)} deliveries not succeeded: "
            f"{[(pair, states.get(pair, 'NO DELIVERY ROW')) for pair in missing[:10]]}"
        ) from None
    rows = set(
        Delivery.objects.filter(message__uid__in=messages).values_list("message__uid", "endpoint__uid")
    )
    assert rows == expected, f"delivery rows differ from accepted pairs: {rows ^ expected}"
    for endpoint in endpoints:
        got = {r.headers.get("webhook-id") for r in receiver.received(endpoint.path)}
        lost = sorted(set(messages) - got)
        assert not lost, f"receiver never got {lost} at {endpoint.path}"


def endpoint_row(registered: Registered) -> Endpoint:
    return Endpoint.objects.get(uid=registered.uid)
