"""The scheduler tick stays out of the worker's log (config/quiet_ticks.py) unless it
hands work out; it runs every quarter second here, every second by default."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.e2e.helpers import wait_until
from tests.factories import DeliveryFactory, EndpointFactory

pytestmark = pytest.mark.e2e


@pytest.mark.django_db(transaction=True)
def test_ticks_log_nothing_until_one_hands_out_a_delivery(make_worker) -> None:
    worker = make_worker(concurrency=2)  # with the embedded beat (-B), at INFO
    endpoint = EndpointFactory(url="http://127.0.0.1:9/hook")  # refused: the attempt fails fast

    # Due and unleased, as after a lost hand-off: only a tick finds it.
    DeliveryFactory(endpoint=endpoint, message__tenant=endpoint.tenant, next_attempt_at=timezone.now())

    wait_until(
        lambda: "dispatched 1 due deliveries" in worker.log.read_text(),
        timeout=20,
        what="a tick to hand it out",
    )
    log = worker.log.read_text()
    assert "Sending due task" not in log, log[-3000:]
    # "Task hookpost.dispatch_due[<id>] received" / "succeeded" (the banner lists it bare)
    assert "hookpost.dispatch_due[" not in log, log[-3000:]
