"""The circuit breaker's Lua scripts against the real Redis: thresholds,
cool-downs that double, exactly one probe however many callers race for it
(threads and separate processes), and the mirror on the Endpoint row."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from subprocess import PIPE
from typing import Any, cast

import pytest
from django.conf import settings as django_settings

from bench import process_groups
from deliveries import breaker, shared_state
from deliveries.models import OperationalEvent
from deliveries.transport import TransportResult
from tests.factories import EndpointFactory
from tests.unit.protection_helpers import open_circuit
from webhooks.models import Endpoint

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
FAIL, OK = breaker.Outcome.FAILURE, breaker.Outcome.SUCCESS


@pytest.fixture
def short(settings):
    """Cool-downs short enough to wait for: 0.3 s doubling up to 1.2 s."""
    settings.HOOKPOST_BREAKER_COOLDOWN_SECONDS = 0.3
    settings.HOOKPOST_BREAKER_MAX_COOLDOWN_SECONDS = 1.2
    return settings


@pytest.fixture
def endpoint() -> Endpoint:
    return EndpointFactory.create()


def _row(endpoint: Endpoint) -> Endpoint:
    return Endpoint.objects.get(pk=endpoint.pk)


def _wait_out(endpoint: Endpoint) -> None:
    """Sleep until the open circuit's cool-down is over."""
    snap = breaker.snapshot(endpoint)
    assert snap is not None and snap.state == breaker.OPEN and snap.cooldown_seconds is not None
    time.sleep(snap.cooldown_seconds + 0.05)


# --- Classification ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        (TransportResult(status=200), OK),
        (TransportResult(status=302), OK),
        (TransportResult(status=400), OK),
        (TransportResult(status=404), OK),
        (TransportResult(status=410), OK),
        (TransportResult(status=429), FAIL),
        (TransportResult(status=500), FAIL),
        (TransportResult(status=503), FAIL),
        (TransportResult(status=None, error_class="ConnectionError"), FAIL),
        (TransportResult(status=None, error_class="Timeout"), FAIL),
        (TransportResult(status=None, error_class="TLSError"), FAIL),
        (TransportResult(status=None, error_class="DNSError"), FAIL),
        (TransportResult(status=None, error_class="TargetRejected"), breaker.Outcome.IGNORED),
    ],
)
def test_breaker_failures_are_connection_errors_timeouts_5xx_and_429_only(result, outcome):
    assert breaker.outcome_of(result) is outcome


# --- Closed -> open -----------------------------------------------------------------


def test_five_breaker_failures_in_a_row_open_the_circuit(endpoint):
    # given four failures: still closed, and attempts are let through
    for _ in range(4):
        assert breaker.record(endpoint, FAIL) is None
    assert breaker.admit(endpoint, probe_lease_seconds=5).allowed

    # when the fifth comes
    transition = breaker.record(endpoint, FAIL)

    # then the circuit opens for the base cool-down, and the row mirrors it
    assert transition is not None
    assert (transition.from_state, transition.to_state, transition.reason) == (
        "closed",
        "open",
        "consecutive_failures",
    )
    assert transition.cooldown_seconds == django_settings.HOOKPOST_BREAKER_COOLDOWN_SECONDS == 30
    row = _row(endpoint)
    assert row.circuit_state == "open" and row.circuit_changed_at == transition.at
    admission = breaker.admit(endpoint, probe_lease_seconds=5)
    assert not admission.allowed and 29 < admission.retry_in_seconds <= 30


def test_an_answer_that_is_not_a_breaker_failure_resets_the_run(endpoint):
    # given four failures, then a 4xx (a failed delivery, but the receiver answered)
    for _ in range(4):
        breaker.record(endpoint, FAIL)
    breaker.record(endpoint, breaker.outcome_of(TransportResult(status=422)))

    # when four more failures come
    transitions = [breaker.record(endpoint, FAIL) for _ in range(4)]

    # then the circuit is still closed: the run started again
    assert transitions == [None] * 4
    snap = breaker.snapshot(endpoint)
    assert snap is not None and (snap.state, snap.consecutive_failures) == ("closed", 4)


def test_half_of_twenty_attempts_failing_in_the_window_opens_it_without_five_in_a_row(endpoint):
    # given alternating success and failure: never two failures in a row
    transitions = []
    for _ in range(9):
        transitions += [breaker.record(endpoint, OK), breaker.record(endpoint, FAIL)]
    assert transitions == [None] * 18
    breaker.record(endpoint, OK)

    # when the 20th attempt in the window fails: 10 of 20
    transition = breaker.record(endpoint, FAIL)

    # then the failure rate opens the circuit
    assert transition is not None and (transition.to_state, transition.reason) == ("open", "failure_rate")


def test_a_lower_failure_rate_leaves_it_closed(endpoint):
    for _ in range(10):
        breaker.record(endpoint, OK)
        breaker.record(endpoint, OK)
        assert breaker.record(endpoint, FAIL) is None  # 1 in 3
    snap = breaker.snapshot(endpoint)
    assert snap is not None and snap.state == "closed"
    assert (snap.window_attempts, snap.window_failures) == (30, 10)


def test_a_batch_of_results_counts_like_the_same_results_one_by_one(endpoint):
    # given a batch of 19 successes counted in one call
    assert breaker.record(endpoint, OK, count=19) is None
    snap = breaker.snapshot(endpoint)
    assert snap is not None and (snap.window_attempts, snap.window_failures) == (19, 0)

    # when five failures in a row are counted in one call
    transition = breaker.record(endpoint, FAIL, count=5)

    # then they open the circuit as five separate ones would
    assert transition is not None and (transition.to_state, transition.reason) == (
        "open",
        "consecutive_failures",
    )
    assert transition.consecutive_failures == 5


def test_thresholds_are_settings(settings, endpoint):
    settings.HOOKPOST_BREAKER_FAILURE_THRESHOLD = 2
    breaker.record(endpoint, FAIL)
    transition = breaker.record(endpoint, FAIL)
    assert transition is not None and transition.to_state == "open"


# --- Open -> half-open -> closed / open ---------------------------------------------


def test_after_the_cooldown_exactly_one_probe_goes_out_and_its_success_closes(short, endpoint):
    # given an open circuit whose cool-down has passed
    open_circuit(endpoint)
    _wait_out(endpoint)

    # when several callers ask
    first = breaker.admit(endpoint, probe_lease_seconds=5)
    others = [breaker.admit(endpoint, probe_lease_seconds=5) for _ in range(5)]

    # then the first is the one probe, the others wait for the probe's lease
    assert first.allowed and first.probe and first.state == "half_open"
    assert first.transition is not None and first.transition.to_state == "half_open"
    assert _row(endpoint).circuit_state == "half_open"
    assert [o.allowed for o in others] == [False] * 5
    assert all(4.5 < o.retry_in_seconds <= 5 for o in others)

    # when the probe succeeds
    transition = breaker.record(endpoint, OK, probe=first.probe)

    # then the circuit closes, attempts flow, the row mirrors it, and endpoint.recovered is recorded
    assert transition is not None and (transition.from_state, transition.to_state) == ("half_open", "closed")
    assert breaker.admit(endpoint, probe_lease_seconds=5).allowed
    assert _row(endpoint).circuit_state == "closed"
    event = OperationalEvent.objects.get(endpoint=endpoint)
    assert event.kind == "endpoint.recovered" and event.payload["endpoint_id"] == endpoint.uid


def test_a_failed_probe_reopens_with_a_doubled_cooldown_up_to_the_maximum(short, endpoint):
    # given an open circuit (0.3 s)
    assert open_circuit(endpoint).cooldown_seconds == 0.3
    cooldowns = []
    for _ in range(3):
        # when each probe fails
        _wait_out(endpoint)
        probe = breaker.admit(endpoint, probe_lease_seconds=5)
        assert probe.probe
        transition = breaker.record(endpoint, FAIL, probe=probe.probe)
        assert transition is not None and transition.reason == "probe_failed"
        cooldowns.append(transition.cooldown_seconds)

    # then each re-open doubles the cool-down, capped at the maximum
    assert cooldowns == [0.6, 1.2, 1.2]


def test_opening_again_soon_after_closing_keeps_the_escalation(short, endpoint):
    # given a circuit that opened, failed one probe (0.6 s), then closed
    open_circuit(endpoint)
    _wait_out(endpoint)
    probe = breaker.admit(endpoint, probe_lease_seconds=5).probe
    breaker.record(endpoint, FAIL, probe=probe)
    _wait_out(endpoint)
    probe = breaker.admit(endpoint, probe_lease_seconds=5).probe
    breaker.record(endpoint, OK, probe=probe)

    # when it opens again right away
    transition = open_circuit(endpoint)

    # then it is a re-open: the cool-down doubles from the last one
    assert transition is not None and transition.cooldown_seconds == 1.2


def test_results_of_attempts_other_than_the_probe_change_nothing(short, endpoint):
    # given a half-open circuit with its probe in flight
    open_circuit(endpoint)
    _wait_out(endpoint)
    probe = breaker.admit(endpoint, probe_lease_seconds=5).probe

    # when stragglers (attempts started before the circuit opened) report
    assert breaker.record(endpoint, OK) is None
    assert breaker.record(endpoint, FAIL) is None
    assert breaker.record(endpoint, OK, probe="someone-else") is None

    # then only the probe decides
    assert breaker.snapshot(endpoint).state == "half_open"
    assert breaker.record(endpoint, OK, probe=probe).to_state == "closed"


def test_a_probe_whose_worker_died_is_replaced_after_its_lease(short, endpoint):
    open_circuit(endpoint)
    _wait_out(endpoint)
    lost = breaker.admit(endpoint, probe_lease_seconds=0.2)  # its worker never reports
    assert lost.probe
    assert not breaker.admit(endpoint, probe_lease_seconds=0.2).allowed

    time.sleep(0.25)
    replacement = breaker.admit(endpoint, probe_lease_seconds=0.2)

    assert replacement.allowed and replacement.probe and replacement.probe != lost.probe
    assert breaker.record(endpoint, OK, probe=lost.probe) is None  # the late report is ignored


def test_an_unused_probe_is_handed_back_at_once(short, endpoint):
    open_circuit(endpoint)
    _wait_out(endpoint)
    probe = breaker.admit(endpoint, probe_lease_seconds=30).probe
    assert probe

    breaker.release_probe(endpoint, probe)

    assert breaker.admit(endpoint, probe_lease_seconds=30).probe


def test_reset_forgets_the_circuit(short, endpoint):
    open_circuit(endpoint)
    breaker.reset(endpoint)
    snap = breaker.snapshot(endpoint)
    assert snap is not None and (snap.state, snap.consecutive_failures, snap.window_attempts) == (
        "closed",
        0,
        0,
    )
    assert breaker.admit(endpoint, probe_lease_seconds=5).allowed


def test_transitions_are_sent_as_signals_for_metrics(short, endpoint):
    from deliveries.signals import circuit_transitioned

    seen: list[tuple[str, str, str]] = []

    def count(sender, **kwargs):
        seen.append((kwargs["endpoint_uid"], kwargs["from_state"], kwargs["to_state"]))

    circuit_transitioned.connect(count)
    try:
        open_circuit(endpoint)
        _wait_out(endpoint)
        probe = breaker.admit(endpoint, probe_lease_seconds=5).probe
        breaker.record(endpoint, OK, probe=probe)
    finally:
        circuit_transitioned.disconnect(count)

    assert seen == [
        (endpoint.uid, "closed", "open"),
        (endpoint.uid, "open", "half_open"),
        (endpoint.uid, "half_open", "closed"),
    ]


def test_without_redis_attempts_are_let_through(settings, endpoint):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    assert breaker.admit(endpoint, probe_lease_seconds=5).allowed
    assert breaker.record(endpoint, FAIL) is None
    assert breaker.snapshot(endpoint) is None


# --- Atomicity: many callers race for the probe ---------------------------------------


def _cooled_down_open_circuit(name: str) -> str:
    """A breaker key in state open whose cool-down ended long ago."""
    key = shared_state.key("breaker", f"ep_race_{name}_{time.monotonic_ns()}")
    client = shared_state.client()
    client.hset(key, mapping={"state": "open", "open_until": 0, "cooldown": 1000, "fails": 5})
    client.expire(key, 60)
    return key


def test_threads_racing_for_the_half_open_probe_exactly_one_wins():
    key = _cooled_down_open_circuit("threads")
    barrier = threading.Barrier(32)
    verdicts: list[bytes] = []
    lock = threading.Lock()

    def race(n: int) -> None:
        barrier.wait()
        for i in range(10):
            verdict = cast("list[Any]", breaker._ADMIT([key], [f"t{n}-{i}", 10_000, 60]))[0]
            with lock:
                verdicts.append(verdict)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(verdicts) == 320
    assert verdicts.count(b"probe") == 1
    assert verdicts.count(b"deny") == 319


_RACER = """
import os, sys, time
import django
django.setup()
from deliveries import breaker
key, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
verdicts = [breaker._ADMIT([key], [f"{os.getpid()}-{i}", 10000, 60])[0] for i in range(50)]
print(sum(v == b"probe" for v in verdicts), len(verdicts))
"""


def test_processes_racing_for_the_half_open_probe_exactly_one_wins():
    # given a cooled-down open circuit and six separate processes (as six workers)
    key = _cooled_down_open_circuit("processes")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "REDIS_URL": django_settings.REDIS_URL,
    }
    start = time.time() + 4  # every process imports Django first, then they start together
    procs = [
        process_groups.start([sys.executable, "-c", _RACER, key, str(start)], cwd=ROOT, env=env, stdout=PIPE)
        for _ in range(6)
    ]

    # when each asks 50 times at the same moment
    try:
        results = [proc.communicate(timeout=60)[0].split() for proc in procs]
    finally:
        for proc in procs:
            process_groups.stop(proc)

    # then exactly one call in 300 became the probe
    assert all(proc.returncode == 0 for proc in procs)
    assert sum(int(wins) for wins, _ in results) == 1
    assert sum(int(total) for _, total in results) == 300


def test_a_slow_failure_marks_the_endpoint_slow_until_a_success(endpoint):
    timeout = TransportResult(status=None, error_class="Timeout", duration_ms=1000)
    quick_500 = TransportResult(status=500, duration_ms=5)
    assert breaker.is_slow(timeout) and not breaker.is_slow(quick_500)

    breaker.record(endpoint, FAIL, slow=breaker.is_slow(quick_500))
    assert not breaker.admit(endpoint, probe_lease_seconds=5).slow

    breaker.record(endpoint, FAIL, slow=breaker.is_slow(timeout))
    assert breaker.admit(endpoint, probe_lease_seconds=5).slow

    breaker.record(endpoint, OK)
    assert not breaker.admit(endpoint, probe_lease_seconds=5).slow
