"""The hand-off defers retry-lane work for an endpoint whose circuit is open, without
queuing a task: the breaker (real Redis) says how long, PostgreSQL keeps the rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis
from django.utils import timezone

from deliveries import admission, breaker, deferral, shared_state, tasks
from deliveries.lanes import Lane
from deliveries.models import Delivery
from tests.factories import DeliveryFactory, EndpointFactory
from tests.unit.protection_helpers import dispatch, open_circuit
from webhooks.models import Endpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch) -> list[tuple[str | None, list[int]]]:
    """The (endpoint uid, delivery ids) of every deliver_batch task queued."""
    seen: list[tuple[str | None, list[int]]] = []

    def apply_async(args: Any, kwargs: Any, **_: Any) -> None:
        seen.append((kwargs["endpoint_uid"], list(args[0])))

    monkeypatch.setattr(tasks.deliver_batch, "apply_async", apply_async)
    return seen


def _handed_off(endpoint: Endpoint, count: int = 2) -> tuple[list[Delivery], str]:
    """``count`` due deliveries for ``endpoint`` under one dispatch lease, as the scheduler leaves them."""
    deliveries = [
        DeliveryFactory.create(endpoint=endpoint, tenant=endpoint.tenant, message__tenant=endpoint.tenant)
        for _ in range(count)
    ]
    token = dispatch(deliveries[0])
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
        lease_token=token,
        lease_expires_at=timezone.now() + timedelta(seconds=120),
        next_attempt_at=timezone.now(),
    )
    return deliveries, token


def _ids(deliveries: list[Delivery]) -> list[int]:
    return [d.pk for d in deliveries]


def test_retry_lane_work_for_an_open_circuit_is_deferred_to_the_cool_downs_end_without_a_task(
    settings, queued
):
    # given an endpoint whose circuit just opened (30 s cool-down) and one that is only failing
    settings.HOOKPOST_BREAKER_COOLDOWN_SECONDS = 30
    down, failing = EndpointFactory.create(), EndpointFactory.create()
    open_circuit(down)
    held, token = _handed_off(down)
    other, other_token = _handed_off(failing)
    before = timezone.now()

    # when both are handed to the retry lane
    tasks.enqueue(_ids(held), token, Lane.RETRY)
    tasks.enqueue(_ids(other), other_token, Lane.RETRY)
    assert len(held) == 2 and all(row.lease_expires_at for row in Delivery.objects.filter(pk__in=_ids(other)))

    # then only the failing endpoint's batch is queued
    assert queued == [(failing.uid, _ids(other))]
    # and the open endpoint's deliveries wait for the cool-down, unleased, no attempt spent
    for row in Delivery.objects.filter(pk__in=_ids(held)):
        assert row.lease_token is None and row.lease_expires_at is None
        assert row.attempt_count == 0 and row.status == Delivery.Status.PENDING
        wait = (row.next_attempt_at - before).total_seconds()
        assert 29 <= wait <= 30 + 5 + 1, wait  # the cool-down left, plus at most the jitter cap


def test_first_lane_work_is_queued_whatever_the_breaker_says(queued):
    # (the first lane only gets endpoints whose mirror says closed; the worker's admission
    # decides if Redis knows better)
    endpoint = EndpointFactory.create()
    open_circuit(endpoint)
    deliveries, token = _handed_off(endpoint)

    tasks.enqueue(_ids(deliveries), token, Lane.FIRST)

    assert queued == [(endpoint.uid, _ids(deliveries))]


def test_a_circuit_whose_cool_down_has_ended_is_queued_for_its_probe(queued):
    endpoint = EndpointFactory.create()
    open_circuit(endpoint)
    state = shared_state.key("breaker", endpoint.uid)
    shared_state.client().hset(state, "open_until", "1")  # long past
    deliveries, token = _handed_off(endpoint)

    tasks.enqueue(_ids(deliveries), token, Lane.RETRY)

    assert queued == [(endpoint.uid, _ids(deliveries))]
    assert all(row.lease_token == token for row in Delivery.objects.filter(pk__in=_ids(deliveries)))


def test_deliveries_someone_else_holds_are_left_as_they_are(queued):
    endpoint = EndpointFactory.create()
    open_circuit(endpoint)
    deliveries, token = _handed_off(endpoint)
    taken = deliveries[1]
    lease_end = timezone.now() + timedelta(seconds=60)
    Delivery.objects.filter(pk=taken.pk).update(lease_token="someone-else", lease_expires_at=lease_end)

    tasks.enqueue(_ids(deliveries), token, Lane.RETRY)

    assert queued == []
    assert Delivery.objects.get(pk=deliveries[0].pk).lease_token is None
    row = Delivery.objects.get(pk=taken.pk)
    assert (row.lease_token, row.lease_expires_at) == ("someone-else", lease_end)


def test_without_redis_the_work_is_queued_for_the_workers_to_decide(queued, monkeypatch):
    endpoint = EndpointFactory.create()
    open_circuit(endpoint)
    deliveries, token = _handed_off(endpoint)

    def down() -> Any:
        raise redis.ConnectionError("down")

    monkeypatch.setattr(shared_state, "client", down)
    tasks.enqueue(_ids(deliveries), token, Lane.RETRY)

    assert queued == [(endpoint.uid, _ids(deliveries))]


def test_a_deferral_that_fails_queues_the_batch_instead(queued, monkeypatch):
    endpoint = EndpointFactory.create()
    open_circuit(endpoint)
    deliveries, token = _handed_off(endpoint)

    def broken(**_: Any) -> int:
        raise RuntimeError("database gone")

    monkeypatch.setattr(deferral, "deliveries_defer_unclaimed", broken)
    tasks.enqueue(_ids(deliveries), token, Lane.RETRY)

    assert queued == [(endpoint.uid, _ids(deliveries))]
    assert all(row.lease_token == token for row in Delivery.objects.filter(pk__in=_ids(deliveries)))


def test_cooling_down_names_only_open_circuits_with_time_left(settings):
    settings.HOOKPOST_BREAKER_COOLDOWN_SECONDS = 30
    opened, closed, unknown = EndpointFactory.create(), EndpointFactory.create(), "ep_never_seen"
    open_circuit(opened)
    open_circuit(closed, failures=2)  # below the threshold: still closed
    probing = EndpointFactory.create()
    open_circuit(probing)
    shared_state.client().hset(shared_state.key("breaker", probing.uid), "open_until", "1")
    assert breaker.admit(probing, probe_lease_seconds=5).probe  # now half-open, its probe out

    left = breaker.cooling_down([opened.uid, closed.uid, unknown, probing.uid, opened.uid])

    assert list(left) == [opened.uid]
    assert 29 <= left[opened.uid] <= 30
    assert breaker.cooling_down([]) == {}
    # admission adds the deferral jitter on top, never less than the time left
    waits = admission.held_by_open_circuits([opened.uid])
    assert list(waits) == [opened.uid] and 29 <= waits[opened.uid] <= 30 + 5


def test_one_hand_off_defers_every_open_endpoints_batch_together(settings, queued):
    settings.HOOKPOST_BREAKER_COOLDOWN_SECONDS = 30
    first, second = EndpointFactory.create(), EndpointFactory.create()
    open_circuit(first)
    open_circuit(second)
    one, token = _handed_off(first)
    two = [
        DeliveryFactory.create(endpoint=second, tenant=second.tenant, message__tenant=second.tenant)
        for _ in range(2)
    ]
    Delivery.objects.filter(pk__in=_ids(two)).update(
        lease_token=token, lease_expires_at=timezone.now(), next_attempt_at=timezone.now()
    )

    tasks.enqueue(_ids(one) + _ids(two), token, Lane.RETRY)

    assert queued == []
    assert not Delivery.objects.filter(pk__in=_ids(one) + _ids(two), lease_token__isnull=False).exists()


def test_a_disabled_endpoints_work_is_queued_for_the_worker_to_skip(queued):
    endpoint = EndpointFactory.create()
    open_circuit(endpoint)
    Endpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
    deliveries, token = _handed_off(endpoint)

    tasks.enqueue(_ids(deliveries), token, Lane.RETRY)

    assert queued == [(endpoint.uid, _ids(deliveries))]
    assert all(row.lease_token == token for row in Delivery.objects.filter(pk__in=_ids(deliveries)))
