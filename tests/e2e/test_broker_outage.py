"""Broker outages: the Redis that carries the queues (a private redis-server each
test starts, so it may shut it down) goes away under load and comes back empty.

Workers reconnect and carry on in every supported pool, no task is killed
half-way (every request a receiver got is recorded as an attempt), the
scheduler tick runs on any worker left, and a publish during the outage is
accepted promptly, kept in PostgreSQL and delivered once Redis is back.
"""

from __future__ import annotations

import importlib.util
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from config.celery import FIRST_QUEUE, MAINTENANCE_QUEUE, RETRY_QUEUE, app
from deliveries import shared_state
from deliveries.models import Attempt, Delivery
from tests.e2e.conftest import Worker
from tests.e2e.helpers import (
    Registered,
    assert_ledger,
    delivery_of,
    register_endpoint,
    wait_for_status,
    wait_until,
)
from tests.e2e.private_redis import PrivateRedis
from tests.e2e.receiver import Receiver, Reply
from webhooks.models import EventType, Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

OUTAGE_SECONDS = 5
MESSAGES = 250  # to two endpoints: 500 deliveries
RECEIVER_LATENCY = 0.03  # so deliveries are in flight when Redis goes away
# The worker layout docs/operations.md documents: one worker per lane, and each
# also consumes ``maintenance``, so the scheduler tick runs on whichever is left.
FIRST_LANE = f"{FIRST_QUEUE},{MAINTENANCE_QUEUE}"
RETRY_LANE = f"{RETRY_QUEUE},{MAINTENANCE_QUEUE}"


@pytest.fixture(autouse=True)
def _release_hanging_handlers(receiver: Receiver) -> Iterator[None]:
    yield
    receiver.release.set()


@dataclass(frozen=True)
class Publisher:
    """A tenant on the API: registers endpoints on a receiver, publishes batches of one event type."""

    api: APIClient
    tenant: Tenant
    event_type: EventType

    def register(self, receiver: Receiver, path: str, **fields: Any) -> Registered:
        return register_endpoint(self.api, self.tenant, receiver, path, **fields)

    def publish_batch(self, start: int, count: int) -> list[str]:
        """Messages ``{"n": start}`` to ``{"n": start + count - 1}`` in one request; their ids."""
        payloads = [
            {"event_type": self.event_type.name, "payload": {"n": n}} for n in range(start, start + count)
        ]
        response = self.api.post(
            f"/api/v1/tenants/{self.tenant.uid}/messages/batch/", {"messages": payloads}, format="json"
        )
        assert response.status_code == 202, response.json()
        return [item["id"] for item in response.json()["data"]]


@pytest.fixture
def publisher(e2e_settings: Any, api: APIClient, tenant: Tenant, event_type: EventType) -> Publisher:
    """``e2e_settings``: this process accepts the receiver's address, as the workers do."""
    return Publisher(api=api, tenant=tenant, event_type=event_type)


def _assert_alive(workers: list[Worker]) -> None:
    for worker in workers:
        assert worker.proc is not None
        assert worker.proc.poll() is None, (
            f"worker ({worker.pool}, -Q {worker.queues}) exited with {worker.proc.returncode}:\n"
            + worker.log.read_text()[-3000:]
        )


def _assert_every_request_recorded(
    receiver: Receiver, messages: list[str], endpoints: list[Registered]
) -> int:
    """Each request the receiver got is an attempt row of its delivery (no task was
    killed between sending and recording); returns how many were duplicates."""
    attempts = Counter(
        Attempt.objects.filter(delivery__message__uid__in=messages).values_list(
            "delivery__message__uid", "delivery__endpoint__uid"
        )
    )
    duplicates = 0
    for endpoint in endpoints:
        got = Counter(r.headers.get("webhook-id") for r in receiver.received(endpoint.path))
        duplicates += sum(n - 1 for n in got.values() if n > 1)
        unrecorded = {m: n for m, n in got.items() if n != attempts[(m, endpoint.uid)]}
        assert not unrecorded, (
            f"{len(unrecorded)} deliveries to {endpoint.path} were sent more often than recorded "
            f"(webhook-id: requests), {duplicates} duplicates in all: {list(unrecorded.items())[:10]}"
        )
    return duplicates


SUPPORTED_POOLS = [
    "threads",
    "prefork",
    "solo",
    pytest.param(
        "gevent",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("gevent") is None, reason="gevent is not installed"
        ),
    ),
]


@pytest.mark.parametrize("pool", SUPPORTED_POOLS)
def test_workers_survive_a_broker_outage_under_load_and_deliver_everything(
    pool: str,
    private_redis: PrivateRedis,
    make_worker,
    receiver: Receiver,
    publisher: Publisher,
):
    # Given a worker per lane, both consuming maintenance, and receivers that take 30 ms a request
    for path in ("/a", "/b"):
        receiver.script(path, Reply(200, delay=RECEIVER_LATENCY))
    endpoints = [publisher.register(receiver, path) for path in ("/a", "/b")]
    workers = [
        make_worker(pool=pool, queues=FIRST_LANE, concurrency=4, beat=False),
        make_worker(pool=pool, queues=RETRY_LANE, concurrency=2, beat=True),
    ]
    expected = MESSAGES * len(endpoints)

    # When messages are published and Redis shuts down while deliveries are in flight
    messages = [m for start in range(0, MESSAGES, 50) for m in publisher.publish_batch(start, 50)]
    receiver.wait_for(expected // 10, timeout=30)
    in_flight = len(receiver.received())
    assert in_flight < expected, "the load must still be running when Redis goes away"
    private_redis.shutdown()
    time.sleep(OUTAGE_SECONDS)
    # ... and comes back on the same port, empty (every queued task is gone)
    private_redis.start()

    # Then every worker is still running
    _assert_alive(workers)
    # ... every accepted delivery succeeded and reached its receiver
    assert_ledger(receiver, messages, endpoints, timeout=90)
    # ... every request sent was recorded (nothing half-recorded), and the workers still run
    duplicates = _assert_every_request_recorded(receiver, messages, endpoints)
    _assert_alive(workers)
    assert not Delivery.objects.filter(message__uid__in=messages).exclude(lease_token=None).exists()
    print(f"{pool}: {in_flight} of {expected} received at the outage, {duplicates} duplicates")


def test_the_scheduler_tick_runs_on_the_worker_that_is_left(
    private_redis: PrivateRedis,
    make_worker,
    receiver: Receiver,
    publisher: Publisher,
):
    # Given a worker per lane, both consuming maintenance, the scheduler in the retry lane's,
    # and an endpoint whose receiver fails once (its retry is due 1 s later)
    receiver.script("/flaky", Reply(500), Reply(200))
    endpoint = publisher.register(receiver, "/flaky", retry_schedule=[1])
    first_lane = make_worker(queues=FIRST_LANE, concurrency=2, beat=False)
    make_worker(queues=RETRY_LANE, concurrency=2, beat=True)
    (message,) = publisher.publish_batch(0, 1)
    wait_for_status(message, endpoint.uid, Delivery.Status.FAILED)

    # When the first lane's worker dies (SIGKILL: it cannot hand anything back)
    first_lane.kill()

    # Then the retry lane's worker still runs the ticks that hand the retry out, and delivers it
    done = wait_for_status(message, endpoint.uid, Delivery.Status.SUCCEEDED, timeout=30)
    assert done.attempt_count == 2
    assert_ledger(receiver, [message], [endpoint])


def test_the_hand_off_to_the_broker_has_bounded_timeouts(private_redis: PrivateRedis):
    # The redis-py connections Celery publishes on, and those of the shared protection state
    with app.connection_for_write() as conn:
        assert conn.port == private_redis.port
        broker = conn.default_channel.client.connection_pool.connection_kwargs  # type: ignore[attr-defined]  # kombu's Redis channel
    state = shared_state.client().connection_pool.connection_kwargs
    for kwargs in (broker, state):
        assert 0 < kwargs["socket_connect_timeout"] <= 0.5, kwargs
        assert 0 < kwargs["socket_timeout"] <= 0.5, kwargs
    # ... one connection attempt when reading queue depths, no publish retry
    assert app.conf.broker_transport_options["max_retries"] == 0
    assert app.conf.task_publish_retry_policy["max_retries"] == 0


@pytest.mark.parametrize("outage", ["down", "frozen"])
def test_a_publish_during_a_redis_outage_is_accepted_at_once_and_delivered_when_redis_is_back(
    outage: str,
    private_redis: PrivateRedis,
    make_worker,
    receiver: Receiver,
    publisher: Publisher,
):
    # Given a worker, and an endpoint with a healthy receiver
    endpoint = publisher.register(receiver, "/ok")
    workers = [
        make_worker(queues=FIRST_LANE, concurrency=2, beat=True),
        make_worker(queues=RETRY_LANE, concurrency=2, beat=False),
    ]

    # When Redis is down (shut down) or frozen (it accepts connections and never answers)
    if outage == "down":
        private_redis.shutdown()
    else:
        private_redis.freeze()
    try:
        started = time.monotonic()
        (message,) = publisher.publish_batch(0, 1)
        took = time.monotonic() - started
        # Then the publish was accepted: durable in PostgreSQL, its hand-off given up quickly
        # (the configured timeouts are well under 1 s; this bound only catches a hang)
        assert took < 3, f"publishing took {took:.1f} s while Redis was {outage}"
        assert delivery_of(message, endpoint.uid).status == Delivery.Status.PENDING
    finally:
        # When Redis is back
        if outage == "down":
            private_redis.start()
        else:
            private_redis.thaw()

    # Then the scheduler hands the delivery out once its dispatch lease expires, and it is delivered
    assert_ledger(receiver, [message], [endpoint], timeout=60)
    _assert_alive(workers)
    wait_until(lambda: len(receiver.received("/ok")) == 1, 1, "exactly one request")
