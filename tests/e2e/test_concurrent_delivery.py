"""Concurrent delivery end to end: a real worker keeps hundreds of requests in flight
on its send loop, with a few database connections, and loses none of them when killed.

Real Celery worker (threads pool, embedded scheduler), Redis, PostgreSQL, and
threaded HTTP receivers on 127.0.0.1 that hold requests open until released.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.utils import timezone

from deliveries.models import Attempt, Delivery
from tests.e2e.helpers import Registered, assert_ledger, publish, register_endpoint, wait_until
from tests.e2e.receiver import Receiver, Reply
from tests.factories import EndpointFactory, TenantFactory
from webhooks.models import Endpoint

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HANGING_ENDPOINTS = 300
IN_FLIGHT = 500
# The database connections one worker process may hold: its 4 pool threads and 4
# recorder threads (config/settings.py), with room for the embedded scheduler.
CONNECTION_BOUND = 10


@pytest.fixture
def hanging() -> Iterator[Receiver]:
    """A receiver that accepts every request and answers none until the test ends."""
    server = Receiver().start()
    server.script("/hang", Reply(204, delay=120))
    yield server
    server.stop()


def test_hanging_receivers_do_not_delay_a_healthy_receivers_first_attempts_or_retries(
    make_worker, receiver: Receiver, hanging: Receiver, e2e_settings, make_client, tenant, event_type
):
    # given a tenant with 300 endpoints whose receiver never answers (30 s timeout each)
    stuck = TenantFactory.create(uid="stuck")
    for _ in range(HANGING_ENDPOINTS):
        EndpointFactory.create(tenant=stuck, url=hanging.url("/hang"), timeout_seconds=30)
    # and a healthy tenant whose receiver fails the first attempt and takes the retry
    api = make_client(tenant).client
    receiver.script("/healthy", Reply(503), Reply(204))
    healthy = register_endpoint(api, tenant, receiver, "/healthy", retry_schedule=[1])
    make_worker(concurrency=4)

    # when the stuck tenant's message has all 300 requests hanging
    stuck_message = publish(make_client(stuck).client, stuck, event_type, {"stuck": True})
    wait_until(lambda: hanging.open_now() >= HANGING_ENDPOINTS, 60, "300 hanging requests")
    # and then the healthy tenant publishes
    message = publish(api, tenant, event_type, {"healthy": True})

    # then its first attempt and its retry both arrive while all 300 still hang
    receiver.wait_for(2, "/healthy", timeout=20)
    assert_ledger(receiver, [message], [healthy], timeout=10)
    assert hanging.open_now() == HANGING_ENDPOINTS
    assert not Attempt.objects.filter(delivery__message__uid=stuck_message).exists()
    assert Delivery.objects.get(message__uid=message).attempt_count == 2


def _slow_endpoints(api, tenant, receiver: Receiver, count: int, cap: int) -> list[Registered]:
    """``count`` endpoints with ``cap`` places each, proven (they answered 2xx before), so
    their batches take every place free (a new endpoint gets one at a time)."""
    endpoints = [
        register_endpoint(api, tenant, receiver, f"/slow/{n}", max_in_flight=cap, timeout_seconds=8)
        for n in range(count)
    ]
    Endpoint.objects.filter(uid__in=[e.uid for e in endpoints]).update(last_success_at=timezone.now())
    return endpoints


def _backends(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application_name]
        )
        return int(cursor.fetchone()[0])


def test_500_requests_in_flight_hold_a_bounded_number_of_database_connections(
    make_worker, receiver: Receiver, e2e_settings, make_client, tenant, event_type, capsys
):
    # given 10 endpoints with 50 places each, on a receiver that holds every request
    api = make_client(tenant).client
    for n in range(10):
        receiver.script(f"/slow/{n}", Reply(204, delay=120))
    endpoints = _slow_endpoints(api, tenant, receiver, 10, cap=50)
    make_worker(concurrency=4, extra_env={"PGAPPNAME": "e2e-in-flight"})

    # when 50 messages put 500 requests in flight in the one worker process
    messages = [publish(api, tenant, event_type, {"n": n}) for n in range(IN_FLIGHT // 10)]
    wait_until(lambda: receiver.open_now() >= IN_FLIGHT, 60, "500 requests in flight")

    # then the worker holds no more database connections than its bound
    backends = _backends("e2e-in-flight")
    with capsys.disabled():
        print(f"\n{receiver.open_now()} requests in flight, {backends} PostgreSQL connections")
    assert 0 < backends <= CONNECTION_BOUND

    # and once the receiver answers, every delivery is recorded
    receiver.release.set()
    assert_ledger(receiver, messages, endpoints, timeout=60)


def test_a_worker_killed_with_500_requests_in_flight_loses_none(
    make_worker, receiver: Receiver, e2e_settings, make_client, tenant, event_type
):
    # given 500 requests in flight in one worker, to a receiver that holds them
    api = make_client(tenant).client
    for n in range(10):
        receiver.script(f"/slow/{n}", Reply(204, delay=120))
    endpoints = _slow_endpoints(api, tenant, receiver, 10, cap=50)
    first = make_worker(concurrency=4)
    messages = [publish(api, tenant, event_type, {"n": n}) for n in range(IN_FLIGHT // 10)]
    wait_until(lambda: receiver.open_now() >= IN_FLIGHT, 60, "500 requests in flight")

    # when the worker is killed (SIGKILL) with all 500 unanswered, and the receiver then answers at once
    first.kill()
    for n in range(10):
        receiver.script(f"/slow/{n}", Reply(204))
    receiver.release.set()
    make_worker(concurrency=4)

    # then every delivery is sent again once its lease ends, and succeeds: none is lost
    assert_ledger(receiver, messages, endpoints, timeout=90)
    assert set(
        Delivery.objects.filter(message__uid__in=messages).values_list("attempt_count", flat=True)
    ) == {1}
