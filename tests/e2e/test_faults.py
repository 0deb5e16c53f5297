"""Faults: a worker killed mid-request, the broker's Redis database flushed, a
receiver that never answers. Each test starts its own workers (``make_worker``)
and ends with the ledger: every accepted (message, endpoint) pair reached the
receiver and its delivery succeeded -- nothing lost."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from config.celery import FIRST_QUEUE, RETRY_QUEUE
from deliveries.models import Delivery
from tests.e2e.helpers import (
    assert_ledger,
    attempts_of,
    delivery_of,
    publish,
    register_endpoint,
    wait_for_status,
    wait_until,
)
from tests.e2e.receiver import Receiver, Reply

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LEASE_MARGIN = 2  # HOOKPOST_LEASE_MARGIN_SECONDS in the e2e worker
DISPATCH_LEASE = 3  # HOOKPOST_DISPATCH_LEASE_SECONDS in the e2e worker and e2e_settings
SLACK = 3.0  # scheduler ticks and a loaded machine


@pytest.fixture(autouse=True)
def _release_hanging_handlers(receiver: Receiver) -> Iterator[None]:
    yield
    receiver.release.set()


def test_worker_killed_while_the_receiver_holds_the_request_is_redelivered_by_a_new_worker(
    make_worker, receiver: Receiver, e2e_settings, make_client, tenant, event_type
):
    # Given a worker, and a receiver that holds the first request for a long time
    api = make_client(tenant).client
    receiver.script("/slow", Reply(200, delay=60), Reply(200))
    endpoint = register_endpoint(api, tenant, receiver, "/slow", timeout_seconds=5)
    first_worker = make_worker()

    # When the worker is SIGKILLed while the request is in flight
    message_id = publish(api, tenant, event_type, {"n": 1})
    (first,) = receiver.wait_for(1, "/slow", timeout=15)
    first_worker.kill()
    assert delivery_of(message_id, endpoint.uid).status == Delivery.Status.PENDING

    # And a new worker starts
    make_worker()

    # Then the new worker delivers it again once the dead worker's lease expires
    got = receiver.wait_for(2, "/slow", timeout=30)
    assert {r.headers["webhook-id"] for r in got} == {message_id}
    # (the lease covers the endpoint's 5 s timeout plus the margin, not the 30 s maximum)
    assert got[1].at - first.at <= 5 + LEASE_MARGIN + SLACK, got[1].at - first.at
    done = wait_for_status(message_id, endpoint.uid, Delivery.Status.SUCCEEDED)
    assert attempts_of(done)[-1].response_status == 200
    assert_ledger(receiver, [message_id], [endpoint])


def test_flushing_the_broker_while_no_worker_runs_loses_no_delivery(
    make_worker, receiver: Receiver, broker, e2e_settings, make_client, tenant, event_type
):
    # Given a worker that delivered one message and then stopped
    api = make_client(tenant).client
    endpoints = [register_endpoint(api, tenant, receiver, path) for path in ("/one", "/two")]
    worker = make_worker()
    warmup = publish(api, tenant, event_type, {"n": "warmup"})
    assert_ledger(receiver, [warmup], endpoints)
    worker.stop()

    # When 20 messages are accepted, their first attempts queued in Redis...
    messages = [publish(api, tenant, event_type, {"n": n}) for n in range(20)]
    assert broker.llen(FIRST_QUEUE) == 20  # a task each: a message's two deliveries share one
    # ... and the broker's database is flushed, losing every queued task
    broker.flushdb()
    assert broker.llen(FIRST_QUEUE) == 0 and broker.llen(RETRY_QUEUE) == 0

    # Then a new worker's scheduler finds them all in PostgreSQL and delivers them
    make_worker()
    assert_ledger(receiver, [warmup, *messages], endpoints, timeout=DISPATCH_LEASE + 30)


def test_flushing_the_broker_under_a_running_worker_loses_no_delivery(
    make_worker, receiver: Receiver, broker, e2e_settings, make_client, tenant, event_type
):
    # Given a running worker and an endpoint whose receiver fails once, so a retry is due later
    api = make_client(tenant).client
    receiver.script("/flaky", Reply(500), Reply(200))
    flaky = register_endpoint(api, tenant, receiver, "/flaky", retry_schedule=[2])
    steady = register_endpoint(api, tenant, receiver, "/steady")
    make_worker()
    before = publish(api, tenant, event_type, {"n": "before"})
    receiver.wait_for(1, "/flaky")

    # When the broker's Redis database is flushed under it (as a Redis restart without persistence)
    broker.flushdb()
    # ... and more messages are accepted afterwards
    after = [publish(api, tenant, event_type, {"n": n}) for n in range(5)]

    # Then the pending retry and every new message are still delivered
    assert_ledger(receiver, [before, *after], [flaky, steady], timeout=DISPATCH_LEASE + 30)


def test_a_receiver_that_never_answers_is_cut_off_by_the_endpoint_timeout(
    make_worker, receiver: Receiver, e2e_settings, make_client, tenant, event_type
):
    # Given an endpoint with a 1 s timeout whose receiver first never answers
    api = make_client(tenant).client
    receiver.script("/hang", Reply(200, delay=60), Reply(200))
    endpoint = register_endpoint(api, tenant, receiver, "/hang", timeout_seconds=1, retry_schedule=[1])
    make_worker()

    # When a message is published
    message_id = publish(api, tenant, event_type, {"n": 1})

    # Then the first attempt is recorded as a timeout, not cut before its 1 s
    def timed_out_attempt():
        attempts = attempts_of(delivery_of(message_id, endpoint.uid))
        return attempts[0] if attempts else None

    first = wait_until(timed_out_attempt, 10, "the first attempt to be recorded")
    assert first.error_class == "Timeout", (first.error_class, first.error_message)
    assert first.response_status is None
    assert first.duration_ms is not None and first.duration_ms >= 900, first.duration_ms
    assert "1 s" in first.error_message
    # ... and the retry delivers it
    done = wait_for_status(message_id, endpoint.uid, Delivery.Status.SUCCEEDED)
    assert [a.error_class for a in attempts_of(done)] == ["Timeout", ""]
    assert_ledger(receiver, [message_id], [endpoint])
