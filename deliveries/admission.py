"""Admission: may one attempt go out now, and if not, how long it waits.

The engine asks after claiming a delivery and before building the request.
The checks, each owned by its own module, run in this order:

1. the circuit breaker (``deliveries.breaker``): open -> wait until it may
   half-open; half-open with a probe in flight -> look again after
   ``HOOKPOST_BREAKER_PROBE_RECHECK_SECONDS`` (or when the probe's lease ends,
   if sooner). The cheapest "no" for an endpoint that is down, so it goes first.
2. the bulkheads (``deliveries.bulkhead``): a full compartment -> wait briefly.
   The endpoint's compartment holds its own ``max_in_flight``, else the setting.
3. the rate limit (``deliveries.ratelimit``): over the limit -> wait for the
   reserved slot. Last, because once it grants a token (or honours a
   reservation) the attempt goes out for certain: no token is spent on work a
   later check would refuse.

A refusal hands back what earlier checks granted (the probe, the places).
A refused delivery is deferred by the engine without spending an attempt;
the waits carry jitter, so a crowd deferred together does not wake together.

Before any of that, the hand-off asks which endpoints' circuits are open
(``held_by_open_circuits``): their work is deferred without a task, as the
breaker would refuse it anyway.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass, field

from django.conf import settings

from deliveries import breaker, bulkhead, ratelimit
from deliveries.transport import TransportResult
from webhooks.models import Endpoint
from webhooks.selectors import endpoint_max_in_flight

CIRCUIT_OPEN = "circuit_open"
BULKHEAD = "bulkhead"
RATE_LIMITED = "rate_limited"

# Deferred work never wakes sooner than this: a claim and a deferral cost two
# writes, not worth repeating within milliseconds.
_MIN_WAIT_SECONDS = 0.05
_MAX_JITTER_SECONDS = 5.0


@dataclass
class Ticket:
    """The answer for one attempt. Admitted when ``defer_seconds`` is None.

    An admitted ticket must be settled with the attempt's result (the breaker
    counts it; a probe reports) and then released (the bulkhead places).
    """

    endpoint: Endpoint
    defer_seconds: float | None = None
    reason: str = ""
    probe: str | None = None
    hold: bulkhead.Hold | None = None
    # Refused by the endpoint's in-flight cap: the batch may wait in the endpoint's
    # line (``bulkhead.wait_in_line``) for the next place to free.
    waits_for_place: bool = False
    # Refused after taking a place at the endpoint, now given back: someone waiting
    # in the endpoint's line may take it (``bulkhead.next_in_line``).
    freed_a_place: bool = False
    _settled: bool = field(default=False, repr=False)

    @property
    def admitted(self) -> bool:
        return self.defer_seconds is None

    @property
    def places(self) -> int:
        """How many requests the admitted batch may have in flight at once (one for a probe)."""
        if self.probe or self.hold is None:
            return 1
        return self.hold.count

    def settle(self, result: TransportResult, count: int = 1) -> breaker.Transition | None:
        """Count the attempt's result (``count`` alike results, for a batch) in the endpoint's breaker."""
        self._settled = True
        return breaker.record(
            self.endpoint,
            breaker.outcome_of(result),
            probe=self.probe,
            slow=breaker.is_slow(result),
            count=count,
        )

    def free_places(self) -> bool:
        """Give back the bulkhead places (idempotent); True if they were places at the
        endpoint, which someone in its line may take now."""
        if self.hold is None:
            return False
        self.hold.release()
        return self.hold.endpoint_key is not None

    def release(self) -> None:
        """Give back the bulkhead places, and the probe if no result was reported."""
        self.free_places()
        if self.probe and not self._settled:
            breaker.release_probe(self.endpoint, self.probe)
            self._settled = True


def admit(*, endpoint: Endpoint, delivery_uid: str, lease_seconds: float, places: int = 1) -> Ticket:
    """Run the checks for a batch whose first attempt is of ``delivery_uid`` to ``endpoint``.

    ``lease_seconds`` is how long the batch may hold what it is granted if
    its worker dies (the deliveries' lease): the probe and the in-flight places.
    ``places``: how many requests the batch would have in flight at once; the
    ticket's hold says how many it got (at least one).
    """
    circuit = breaker.admit(endpoint, probe_lease_seconds=lease_seconds)
    if not circuit.allowed:
        wait = circuit.retry_in_seconds
        if circuit.state == breaker.HALF_OPEN:
            # The probe's answer is the next decision point, and most probes
            # answer long before their lease ends: look again soon.
            wait = min(wait, settings.HOOKPOST_BREAKER_PROBE_RECHECK_SECONDS)
        return Ticket(endpoint, _jittered(wait), CIRCUIT_OPEN)
    ticket = Ticket(endpoint, probe=circuit.probe)
    hold = bulkhead.acquire(
        endpoint_uid=endpoint.uid,
        slow=circuit.slow,
        lease_seconds=lease_seconds,
        timeout_seconds=float(endpoint.timeout_seconds or settings.HOOKPOST_DEFAULT_TIMEOUT_SECONDS),
        max_in_flight=cap_of(endpoint),
        wanted=places,
    )
    if isinstance(hold, bulkhead.Refused):
        ticket.release()
        return Ticket(endpoint, hold.wait_seconds, BULKHEAD, waits_for_place=hold.compartment == "endpoint")
    ticket.hold = hold
    rate_wait = take_rate(endpoint=endpoint, delivery_uid=delivery_uid)
    if rate_wait is not None:
        ticket.release()
        return Ticket(endpoint, rate_wait, RATE_LIMITED, freed_a_place=hold.endpoint_key is not None)
    return ticket


def circuit_wait(*, endpoint: Endpoint) -> float | None:
    """For a batch already admitted that would go on: None while the endpoint's circuit
    lets attempts through without a probe, else how long its rest waits (jittered).

    A probe it would be granted is handed straight back: the batch's next
    attempt is not the one to decide the circuit.
    """
    circuit = breaker.admit(endpoint, probe_lease_seconds=settings.HOOKPOST_BREAKER_PROBE_RECHECK_SECONDS)
    if circuit.probe:
        breaker.release_probe(endpoint, circuit.probe)
        return _jittered(settings.HOOKPOST_BREAKER_PROBE_RECHECK_SECONDS)
    return None if circuit.allowed else _jittered(circuit.retry_in_seconds)


def slow_start(endpoint: Endpoint) -> bool:
    """Whether the endpoint is held to one request in flight (``cap_of``): it has never
    answered 2xx, or its circuit is not closed (as loaded with its deliveries).

    Answers that do not count against the breaker (a 4xx for one payload) leave a
    proven endpoint at its cap.
    """
    return endpoint.last_success_at is None or endpoint.circuit_state != Endpoint.CircuitState.CLOSED


def cap_of(endpoint: Endpoint) -> int:
    """The endpoint's cap on requests in flight across the fleet: its own
    (``endpoint_max_in_flight``), or one during a ``slow_start``.

    A receiver that hangs is not known to until its first timeout, and a
    thousand new endpoints that all hang must not fill the workers'
    ``HOOKPOST_WORKER_MAX_IN_FLIGHT`` with ten requests each; their other
    batches wait in their line unclaimed. A success recorded (or the circuit
    closing again) lifts the cap for the next batches.
    """
    return 1 if slow_start(endpoint) else endpoint_max_in_flight(endpoint=endpoint)


def held_by_open_circuits(endpoint_uids: Collection[str]) -> dict[str, float]:
    """Endpoints whose circuit will refuse every attempt for a while, each with how long
    to defer its work (the cool-down left, with jitter): what ``admit`` would answer
    the first delivery of each, asked for all of them in one round trip.

    The hand-off (``deliveries.tasks.enqueue``) defers their deliveries in the
    database instead of queuing tasks that would claim them only to defer them,
    a claim and a deferral per endpoint and hand-off for as long as it is down.
    """
    return {uid: _jittered(left) for uid, left in breaker.cooling_down(endpoint_uids).items()}


def take_rate(*, endpoint: Endpoint, delivery_uid: str) -> float | None:
    """Spend a rate-limit token for one attempt: None if it may go now, else seconds to wait.

    ``admit`` asks for the first attempt of a batch; the engine asks again
    before each further attempt of the batch, which already holds its other
    admissions (the breaker's verdict, the bulkhead place).
    """
    if not endpoint.rate_limit:
        return None
    taken = ratelimit.take(endpoint_uid=endpoint.uid, rate=endpoint.rate_limit, delivery_uid=delivery_uid)
    if taken.allowed:
        return None
    # A reserved slot is exact: jitter would only hand it to someone else.
    wait = taken.wait_seconds if taken.reserved else _jittered(taken.wait_seconds)
    return max(wait, _MIN_WAIT_SECONDS)


def _jittered(seconds: float) -> float:
    spread = min(max(seconds * settings.HOOKPOST_DEFER_JITTER, _MIN_WAIT_SECONDS), _MAX_JITTER_SECONDS)
    return max(seconds, _MIN_WAIT_SECONDS) + random.uniform(0, spread)
