"""Work for an endpoint that is failing, or has never succeeded, takes the
retry lane, even on its first attempt: from the scheduler and straight from ingest, so a broken
tenant's fan-out never queues ahead of healthy endpoints' fresh messages."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from config.celery import FIRST_QUEUE, RETRY_QUEUE
from deliveries import scheduler, tasks
from deliveries.lanes import Lane
from deliveries.models import Delivery
from tests.factories import DeliveryFactory, EndpointFactory
from webhooks.models import Endpoint

pytestmark = pytest.mark.django_db


def _due(endpoint: Endpoint, attempts: int = 0) -> Delivery:
    return DeliveryFactory.create(
        endpoint=endpoint,
        tenant=endpoint.tenant,
        message__tenant=endpoint.tenant,
        attempt_count=attempts,
        next_attempt_at=timezone.now(),
    )


@pytest.fixture
def endpoints() -> dict[str, Endpoint]:
    return {
        "healthy": EndpointFactory.create(last_success_at=timezone.now()),
        "failing": EndpointFactory.create(consecutive_failures=3, last_success_at=timezone.now()),
        "open": EndpointFactory.create(circuit_state="open", last_success_at=timezone.now()),
        "unproven": EndpointFactory.create(),  # never answered 2xx: may hang on its first attempt
    }


def test_the_scheduler_sends_first_attempts_of_failing_endpoints_to_the_retry_lane(
    endpoints, django_capture_on_commit_callbacks
):
    first = {name: _due(endpoint) for name, endpoint in endpoints.items()}
    retry = _due(endpoints["healthy"], attempts=2)
    handed: dict[Lane, list[int]] = {Lane.FIRST: [], Lane.RETRY: []}

    with django_capture_on_commit_callbacks(execute=True):
        report = scheduler.dispatch_due(enqueue=lambda ids, token, lane: handed[lane].extend(ids), limit=10)

    assert (report.first_attempts, report.retries) == (1, 4)
    assert handed[Lane.FIRST] == [first["healthy"].pk]
    assert sorted(handed[Lane.RETRY]) == sorted(
        [first["failing"].pk, first["open"].pk, first["unproven"].pk, retry.pk]
    )


def test_fresh_deliveries_of_failing_endpoints_skip_the_first_lane(endpoints, monkeypatch):
    deliveries = {name: _due(endpoint) for name, endpoint in endpoints.items()}
    queued: list[tuple[list[int], Lane]] = []

    def record(ids: list[int], token: str, lane: Lane, endpoints: Any = None) -> Any:
        queued.append((sorted(ids), lane))

    monkeypatch.setattr(tasks, "enqueue", record)
    monkeypatch.setattr(tasks, "_read_queue_depths", lambda *_: dict.fromkeys((FIRST_QUEUE, RETRY_QUEUE), 0))

    tasks.enqueue_fresh([d.pk for d in deliveries.values()], "token")

    assert queued == [
        ([deliveries["healthy"].pk], Lane.FIRST),
        (sorted([deliveries["failing"].pk, deliveries["open"].pk, deliveries["unproven"].pk]), Lane.RETRY),
    ]


@pytest.mark.parametrize("lane", [Lane.FIRST, Lane.RETRY])
def test_a_round_for_one_lane_hands_out_only_that_lanes_work(
    endpoints, lane, django_capture_on_commit_callbacks
):
    # (the tick fills one lane per round)
    first = {name: _due(endpoint) for name, endpoint in endpoints.items()}
    retry = _due(endpoints["healthy"], attempts=2)
    handed: dict[Lane, list[int]] = {Lane.FIRST: [], Lane.RETRY: []}

    with django_capture_on_commit_callbacks(execute=True):
        scheduler.dispatch_due(enqueue=lambda ids, token, into: handed[into].extend(ids), limit=10, lane=lane)

    if lane is Lane.FIRST:
        assert handed == {Lane.FIRST: [first["healthy"].pk], Lane.RETRY: []}
    else:
        assert handed[Lane.FIRST] == []
        assert sorted(handed[Lane.RETRY]) == sorted(
            [first["failing"].pk, first["open"].pk, first["unproven"].pk, retry.pk]
        )
    left = Delivery.objects.filter(lease_token__isnull=True).count()
    assert left == 5 - len(handed[Lane.FIRST]) - len(handed[Lane.RETRY])
