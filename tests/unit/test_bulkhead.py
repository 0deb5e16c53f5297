"""Bulkheads: the fleet-wide in-flight cap per endpoint (Redis, with leases so
a dead holder cannot leak its place) and the per-worker compartment for
endpoints that are failing slowly."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from deliveries import bulkhead
from deliveries.bulkhead import Hold, Refused


@pytest.fixture
def endpoint() -> str:
    return f"ep_bh_{uuid.uuid4().hex}"


@pytest.fixture
def worker_of_four(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """A worker process with a pool of 4: slowly failing endpoints may hold 2 slots."""
    settings.HOOKPOST_DEGRADED_WORKER_SHARE = 0.5
    bulkhead.configure_worker(4)
    yield
    bulkhead.configure_worker(0)


def _take(endpoint: str, *, slow: bool = False, lease: float = 30, timeout: float = 1) -> Hold | Refused:
    return bulkhead.acquire(endpoint_uid=endpoint, slow=slow, lease_seconds=lease, timeout_seconds=timeout)


def test_an_endpoint_holds_at_most_its_cap_of_places_across_the_fleet(settings, endpoint):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 2
    settings.HOOKPOST_BULKHEAD_RETRY_SECONDS = 1
    first, second = _take(endpoint), _take(endpoint)
    assert isinstance(first, Hold) and isinstance(second, Hold)
    assert bulkhead.in_flight(endpoint_uid=endpoint) == 2

    third = _take(endpoint)
    assert isinstance(third, Refused) and third.compartment == "endpoint"
    assert 1 <= third.wait_seconds <= 2  # briefly, spread over a second

    first.release()
    first.release()  # idempotent
    assert bulkhead.in_flight(endpoint_uid=endpoint) == 1
    assert isinstance(_take(endpoint), Hold)


def test_a_place_whose_holder_died_frees_itself_when_its_lease_ends(settings, endpoint):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 1
    assert isinstance(_take(endpoint, lease=0.2), Hold)  # never released
    assert isinstance(_take(endpoint, lease=0.2), Refused)

    time.sleep(0.25)

    assert isinstance(_take(endpoint, lease=0.2), Hold)


def test_racing_threads_never_exceed_the_cap(settings, endpoint):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 3
    barrier = threading.Barrier(20)
    holds: list[Hold] = []
    lock = threading.Lock()

    def take() -> None:
        barrier.wait()
        hold = _take(endpoint)
        if isinstance(hold, Hold):
            with lock:
                holds.append(hold)

    threads = [threading.Thread(target=take) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(holds) == 3


def test_slowly_failing_endpoints_together_hold_at_most_their_share_of_a_worker(worker_of_four):
    failing = [f"ep_slow_{uuid.uuid4().hex}" for _ in range(3)]
    held = [_take(e, slow=True, timeout=5) for e in failing]

    # two slow endpoints fill the compartment; the third waits at least their timeout
    assert isinstance(held[0], Hold) and isinstance(held[1], Hold)
    assert isinstance(held[2], Refused) and held[2].compartment == "slow" and held[2].wait_seconds >= 5
    # an endpoint that is not failing slowly still gets a slot
    assert isinstance(_take(f"ep_ok_{uuid.uuid4().hex}"), Hold)

    held[0].release()
    assert isinstance(_take(failing[2], slow=True), Hold)


def test_the_wait_grows_with_the_crowd_waiting_for_slow_slots(worker_of_four):
    blockers = [_take(f"ep_slow_{uuid.uuid4().hex}", slow=True) for _ in range(2)]
    assert all(isinstance(b, Hold) for b in blockers)

    waits = [_take(f"ep_slow_{uuid.uuid4().hex}", slow=True, timeout=1) for _ in range(40)]

    assert all(isinstance(w, Refused) for w in waits)
    # 40 waiting for 2 places that serve one attempt a second each: spread over ~20 s
    assert max(w.wait_seconds for w in waits) > 5  # type: ignore[union-attr]
    assert all(1 <= w.wait_seconds <= 1 + 20 for w in waits)  # type: ignore[union-attr]


def test_a_full_endpoint_cap_hands_back_the_compartment_slot(settings, worker_of_four, endpoint):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 1
    assert isinstance(_take(endpoint, slow=True), Hold)
    # refused by the endpoint cap: its compartment slot must not stay taken
    assert isinstance(_take(endpoint, slow=True), Refused)
    assert isinstance(_take(f"ep_other_{uuid.uuid4().hex}", slow=True), Hold)


def test_outside_a_worker_the_compartment_is_unlimited(endpoint):
    bulkhead.configure_worker(0)
    holds = [_take(f"ep_{n}_{endpoint}", slow=True) for n in range(20)]
    assert all(isinstance(h, Hold) for h in holds)
