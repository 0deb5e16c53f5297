"""Bulkheads: the fleet-wide in-flight cap per endpoint (Redis, with leases so
a dead holder cannot leak its place) and the per-worker compartment for
endpoints that are failing slowly."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import cast

import pytest
from django.utils import timezone

from deliveries import admission, bulkhead, shared_state
from deliveries.bulkhead import Hold, Refused
from tests.factories import EndpointFactory
from webhooks.models import Endpoint


@pytest.fixture
def endpoint() -> str:
    return f"ep_bh_{uuid.uuid4().hex}"


@pytest.fixture
def worker_of_four(settings) -> Iterator[None]:
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
    # until the earliest place's lease ends (30 s), spread over a second: no place frees
    # sooner except by a batch finishing, which sends the endpoint's line on
    assert 29 <= third.wait_seconds <= 31

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
    assert max(w.wait_seconds for w in waits) > 5  # type: ignore[union-attr]  # all Refused (asserted above)
    assert all(1 <= w.wait_seconds <= 1 + 20 for w in waits)  # type: ignore[union-attr]  # all Refused (asserted above)


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


# --- per-endpoint caps (Endpoint.max_in_flight) ----------------------------------------


def _take_capped(endpoint: str, cap: int | None, *, lease: float = 30) -> Hold | Refused:
    return bulkhead.acquire(
        endpoint_uid=endpoint, slow=False, lease_seconds=lease, timeout_seconds=1, max_in_flight=cap
    )


def _pttl(key: str) -> int:
    return cast(int, shared_state.client().pttl(key))


def test_an_endpoints_own_cap_replaces_the_setting_and_leaves_others_at_the_default(settings, endpoint):
    # given a platform default of 4 and an endpoint capped at 2
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 4
    other = f"ep_default_{uuid.uuid4().hex}"

    # then the capped endpoint gets 2 places and its third attempt is refused
    capped = [_take_capped(endpoint, 2) for _ in range(3)]
    assert [isinstance(h, Hold) for h in capped] == [True, True, False]
    assert isinstance(capped[2], Refused) and capped[2].compartment == "endpoint"
    # while another endpoint still gets the default 4, and no more
    default = [_take_capped(other, None) for _ in range(5)]
    assert [isinstance(h, Hold) for h in default] == [True, True, True, True, False]
    # and a cap above the default is honoured too
    roomy = f"ep_roomy_{uuid.uuid4().hex}"
    assert all(isinstance(_take_capped(roomy, 6), Hold) for _ in range(6))
    assert isinstance(_take_capped(roomy, 6), Refused)


def test_a_look_by_uid_follows_the_cap_the_holders_took_their_places_under(settings, endpoint):
    # given a default of 10 and two places held under the endpoint's own cap of 2
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 10
    first, second = _take_capped(endpoint, 2), _take_capped(endpoint, 2)
    assert isinstance(first, Hold) and isinstance(second, Hold)

    # then the looks that know only the uid see the endpoint full, not 2 of 10
    assert bulkhead.place_wait(endpoint_uid=endpoint) is not None
    assert bulkhead.wait_in_line(endpoint_uid=endpoint, entry="a", seconds=30) is False
    # and a place freed is seen at once
    first.release()
    assert bulkhead.place_wait(endpoint_uid=endpoint) is None
    assert bulkhead.wait_in_line(endpoint_uid=endpoint, entry="b", seconds=30) is True

    # and an endpoint whose cap is lowered is full under the new cap at its next acquire
    lowered = f"ep_lowered_{uuid.uuid4().hex}"
    assert all(isinstance(_take_capped(lowered, 10), Hold) for _ in range(3))
    assert bulkhead.place_wait(endpoint_uid=lowered) is None
    assert isinstance(_take_capped(lowered, 2), Refused)
    assert bulkhead.place_wait(endpoint_uid=lowered) is not None


def test_without_a_stored_cap_the_looks_use_the_setting(settings, endpoint):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 2
    assert all(isinstance(_take_capped(endpoint, None), Hold) for _ in range(2))
    shared_state.client().delete(shared_state.key("inflight", endpoint, "cap"))  # lapsed or flushed

    assert bulkhead.place_wait(endpoint_uid=endpoint) is not None
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 3
    assert bulkhead.place_wait(endpoint_uid=endpoint) is None


def test_the_stored_cap_lives_as_long_as_the_holders_and_never_cuts_a_longer_lease(endpoint):
    holders, cap = shared_state.key("inflight", endpoint), shared_state.key("inflight", endpoint, "cap")
    # given a place held for 30 s
    assert isinstance(_take_capped(endpoint, 5, lease=30), Hold)
    assert 30_000 < _pttl(holders) <= 31_000 and 30_000 < _pttl(cap) <= 31_000

    # when another attempt takes a place with a short lease
    assert isinstance(_take_capped(endpoint, 5, lease=0.2), Hold)

    # then neither key expires before the first holder's lease ends
    assert _pttl(holders) > 29_000 and _pttl(cap) > 29_000


@pytest.mark.django_db
def test_admission_gives_the_bulkhead_the_endpoints_cap(settings):
    # given a default of 10, an endpoint capped at 2 and one left at the default, both proven
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 10
    proven = timezone.now()
    capped = EndpointFactory.create(max_in_flight=2, last_success_at=proven)
    default = EndpointFactory.create(last_success_at=proven)

    def admit(endpoint: Endpoint) -> admission.Ticket:
        return admission.admit(endpoint=endpoint, delivery_uid=f"dlv_{uuid.uuid4().hex}", lease_seconds=30)

    # then the capped endpoint admits 2 and refuses the third, which may wait in its line
    tickets = [admit(capped) for _ in range(3)]
    assert [t.admitted for t in tickets] == [True, True, False]
    assert tickets[2].reason == admission.BULKHEAD and tickets[2].waits_for_place
    assert bulkhead.place_wait(endpoint_uid=capped.uid) is not None
    # and the other endpoint is not held to 2
    assert all(admit(default).admitted for _ in range(3))
    assert bulkhead.place_wait(endpoint_uid=default.uid) is None
    # and a place handed back admits the next one
    tickets[0].release()
    assert admit(capped).admitted


def test_an_endpoint_has_one_place_until_it_is_proven_and_while_its_circuit_is_not_closed(settings):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 10
    proven = timezone.now()
    # a new endpoint, one answering 2xx, one that refused a payload since (a 4xx: not a
    # breaker failure), one whose circuit is open, one half-open
    new = EndpointFactory.build(max_in_flight=4, last_success_at=None)
    healthy = EndpointFactory.build(max_in_flight=4, last_success_at=proven)
    refused = EndpointFactory.build(last_success_at=proven, consecutive_failures=1)
    tripped = EndpointFactory.build(last_success_at=proven, circuit_state="open")
    probing = EndpointFactory.build(last_success_at=proven, circuit_state="half_open")

    caps = [admission.cap_of(e) for e in (new, healthy, refused, tripped, probing)]
    assert caps == [1, 4, 10, 1, 1]


def test_a_hold_counts_the_places_left_only_while_someone_waits_in_the_line(settings, endpoint):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 5
    # with nobody in the endpoint's line, the places left are not worth sending anyone on for
    alone = _take(endpoint)
    assert isinstance(alone, Hold) and alone.left == 0
    # with a batch waiting, the next hold says how many places it could take now
    bulkhead.wait_in_line(endpoint_uid=endpoint, entry="waiting", seconds=30)
    beside = _take(endpoint)
    assert isinstance(beside, Hold) and beside.left == 3
