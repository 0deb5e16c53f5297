"""Graceful shutdown: SIGTERM mid-delivery loses nothing and the worker exits
within its grace period."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deliveries.models import Attempt, Delivery
from tests.e2e.helpers import assert_ledger, delivery_of, publish, register_endpoint
from tests.e2e.receiver import Receiver, Reply

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

GRACE_SECONDS = 15  # how long an orchestrator waits after SIGTERM before SIGKILL


@pytest.fixture(autouse=True)
def _release_hanging_handlers(receiver: Receiver) -> Iterator[None]:
    yield
    receiver.release.set()


def test_sigterm_finishes_in_flight_deliveries_and_hands_back_the_rest(
    make_worker, receiver: Receiver, e2e_settings, make_client, tenant, event_type
):
    # Given an endpoint that takes two requests at a time and a receiver that takes 2 s
    # per request (a worker sends all it may at once: the endpoint's cap keeps the rest back)
    api = make_client(tenant).client
    receiver.script("/slow", Reply(200, delay=2.0))
    endpoint = register_endpoint(api, tenant, receiver, "/slow", timeout_seconds=10, max_in_flight=2)
    worker = make_worker(concurrency=2)
    messages = [publish(api, tenant, event_type, {"n": n}) for n in range(6)]

    # When SIGTERM arrives while requests are in flight
    receiver.wait_for(1, "/slow", timeout=15)
    in_flight_at_sigterm = {r.headers["webhook-id"] for r in receiver.received("/slow")}
    exit_code = worker.stop(timeout=GRACE_SECONDS)

    # Then the worker exits cleanly within its grace period (one still running at its
    # end is killed: exit status -9)...
    assert exit_code == 0, worker.log.read_text()[-2000:]
    # ...having recorded the outcome of what it was sending (no lost attempt)
    for message_id in in_flight_at_sigterm:
        delivery = delivery_of(message_id, endpoint.uid)
        assert delivery.status == Delivery.Status.SUCCEEDED, (delivery.status, delivery.last_error)
        assert Attempt.objects.filter(delivery=delivery).count() == 1
    # ...and left the rest pending for the next worker, which delivers every one
    unfinished = Delivery.objects.exclude(status=Delivery.Status.SUCCEEDED).count()
    assert unfinished > 0, "the test must stop the worker before it drained everything"
    make_worker()
    assert_ledger(receiver, messages, [endpoint], timeout=60)
