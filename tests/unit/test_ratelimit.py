"""The token bucket against the real Redis: bursts, reserved slots that are
honoured without a second token, the reservation horizon, and the rate held
by concurrent takers with nothing dropped."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from deliveries import ratelimit


def _endpoint() -> str:
    return f"ep_rl_{uuid.uuid4().hex}"


def _delivery() -> str:
    return f"dlv_{uuid.uuid4().hex}"


def test_a_full_bucket_allows_a_burst_then_reserves_slots_one_interval_apart(settings):
    settings.HOOKPOST_RATE_LIMIT_BURST_SECONDS = 1
    endpoint = _endpoint()

    # given a rate of 5/s: the bucket holds 5
    burst = [ratelimit.take(endpoint_uid=endpoint, rate=5, delivery_uid=_delivery()) for _ in range(5)]
    assert all(t.allowed for t in burst)

    # when three more come at once
    over = [ratelimit.take(endpoint_uid=endpoint, rate=5, delivery_uid=_delivery()) for _ in range(3)]

    # then each is told to wait for its own slot, 200 ms apart, and holds it
    assert [t.allowed for t in over] == [False] * 3
    assert all(t.reserved for t in over)
    waits = [t.wait_seconds for t in over]
    for expected, wait in zip((0.2, 0.4, 0.6), waits, strict=True):
        assert expected - 0.1 < wait <= expected + 0.001, waits  # 0.1: the calls take a moment


def test_a_delivery_that_reserved_a_slot_goes_through_on_it_without_a_second_token(settings):
    settings.HOOKPOST_RATE_LIMIT_BURST_SECONDS = 1
    endpoint, waiting = _endpoint(), _delivery()
    ratelimit.take(endpoint_uid=endpoint, rate=1, delivery_uid=_delivery())  # the one token
    reserved = ratelimit.take(endpoint_uid=endpoint, rate=1, delivery_uid=waiting)
    assert reserved.reserved and 0.9 < reserved.wait_seconds <= 1.0

    # when the delivery comes back (even a little early) it goes through on its reservation
    assert ratelimit.take(endpoint_uid=endpoint, rate=1, delivery_uid=waiting).allowed

    # and it took no second token: the next newcomer queues behind the reserved slot only
    newcomer = ratelimit.take(endpoint_uid=endpoint, rate=1, delivery_uid=_delivery())
    assert newcomer.reserved and 1.9 < newcomer.wait_seconds <= 2.0


def test_reservations_reach_only_as_far_as_the_horizon(settings):
    settings.HOOKPOST_RATE_LIMIT_BURST_SECONDS = 1
    settings.HOOKPOST_RATE_LIMIT_MAX_RESERVE_SECONDS = 2
    endpoint = _endpoint()
    takes = [ratelimit.take(endpoint_uid=endpoint, rate=1, delivery_uid=_delivery()) for _ in range(4)]

    assert [(t.allowed, t.reserved) for t in takes] == [
        (True, False),
        (False, True),
        (False, True),
        (False, False),
    ]
    # beyond the horizon: wait that long without a reservation, then ask again
    assert takes[3].wait_seconds == 2


def test_the_burst_is_a_setting(settings):
    settings.HOOKPOST_RATE_LIMIT_BURST_SECONDS = 2
    endpoint = _endpoint()
    takes = [
        ratelimit.take(endpoint_uid=endpoint, rate=3, delivery_uid=_delivery()).allowed for _ in range(7)
    ]
    assert takes == [True] * 6 + [False]


def test_concurrent_takers_get_at_most_the_rate_and_every_delivery_is_sent(settings):
    # given 40 deliveries for an endpoint limited to 10/s (burst 10), taken by 8 threads
    settings.HOOKPOST_RATE_LIMIT_BURST_SECONDS = 1
    endpoint, rate = _endpoint(), 10
    pending = [_delivery() for _ in range(40)]
    sent_at: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                delivery = pending.pop()
            while True:  # deferred, never dropped: come back when told
                taken = ratelimit.take(endpoint_uid=endpoint, rate=rate, delivery_uid=delivery)
                if taken.allowed:
                    with lock:
                        sent_at.append(time.monotonic())
                    break
                time.sleep(taken.wait_seconds)

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # then all 40 went out, and the n-th send came no sooner than the bucket allows
    assert len(sent_at) == 40
    times = sorted(t - start for t in sent_at)
    for n, at in enumerate(times, start=1):
        earliest = max(0.0, (n - 10) / rate)  # 10 from the full bucket, then 10 a second
        assert at >= earliest - 0.05, (n, at)
    # and in no one-second window more than burst + rate went out
    for i, at in enumerate(times):
        assert sum(1 for t in times[i:] if t < at + 1.0) <= 20


@pytest.mark.parametrize("rate", [1, 7, 1000])
def test_capacity_is_at_least_one_token(settings, rate):
    settings.HOOKPOST_RATE_LIMIT_BURST_SECONDS = 0.001
    assert ratelimit.capacity_of(rate) == max(1.0, rate * 0.001)


def test_without_redis_work_is_let_through(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert ratelimit.take(endpoint_uid=_endpoint(), rate=1, delivery_uid=_delivery()).allowed
