"""Batches: one task delivers several deliveries to one endpoint.

The engine claims them under one lease, starts them in order, as many at once
as the places it holds at the endpoint, and records them together; what it
does not send (after a failure, a probe, a spent budget) goes back to the
schedule untouched, and one bad delivery never costs the others their record.
Real PostgreSQL and Redis, scripted transport. The endpoint of most tests has
one place, so its batch goes out one request at a time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deliveries import breaker, bulkhead, engine, leases, outbound, recording
from deliveries.models import Attempt, Delivery
from deliveries.scheduler import due_deliveries
from deliveries.transport import TransportResult
from tests.factories import EndpointFactory
from tests.unit.protection_helpers import ScriptedTransport, leased_batch, open_circuit
from webhooks.models import EndpointSecret

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint() -> Any:
    """A proven endpoint (it answered 2xx before) with one place: its batches go one by one."""
    return EndpointFactory.create(retry_schedule=[60] * 5, max_in_flight=1, last_success_at=timezone.now())


def _script(monkeypatch: Any, *statuses: int | None) -> ScriptedTransport:
    scripted = ScriptedTransport(*statuses)
    monkeypatch.setattr(outbound, "transport", lambda: scripted)
    return scripted


def _rows(deliveries: list[Delivery]) -> list[tuple[str, int, str | None]]:
    by_pk = {d.pk: d for d in Delivery.objects.filter(pk__in=[d.pk for d in deliveries])}
    return [(by_pk[d.pk].status, by_pk[d.pk].attempt_count, by_pk[d.pk].lease_token) for d in deliveries]


def _run(deliveries: list[Delivery], token: str) -> dict[int, str]:
    return engine.delivery_run_batch(delivery_ids=[d.pk for d in deliveries], token=token)


def test_a_batch_is_sent_in_order_and_recorded_together(monkeypatch, endpoint):
    transport = _script(monkeypatch, 200)
    deliveries, token = leased_batch(endpoint, 5)

    statuses = _run(deliveries, token)

    assert statuses == {d.pk: "succeeded" for d in deliveries}
    assert len(transport.sent) == 5
    assert _rows(deliveries) == [("succeeded", 1, None)] * 5
    attempts = Attempt.objects.filter(delivery__in=deliveries)
    assert sorted(attempts.values_list("delivery_id", "number")) == sorted((d.pk, 1) for d in deliveries)


def test_a_batch_costs_the_same_statements_whatever_its_size(monkeypatch):
    _script(monkeypatch, 200)

    def statements(count: int) -> int:
        deliveries, token = leased_batch(EndpointFactory.create(), count)
        with CaptureQueriesContext(connection) as queries:
            assert set(_run(deliveries, token).values()) == {"succeeded"}
        return len(queries.captured_queries)

    # the work per batch is fixed: claim, load, lease, secrets, record (not per delivery)
    assert statements(2) == statements(20)


def test_a_task_holding_several_endpoints_sends_each_as_a_batch_of_its_own(monkeypatch):
    # given one task's deliveries to three endpoints (the dispatcher packs small remains
    # together), under one dispatch lease; the second endpoint answers 503
    endpoints = [EndpointFactory.create(last_success_at=timezone.now(), max_in_flight=1) for _ in range(3)]
    transport = _script(monkeypatch, 200, 200, 503, 200, 200)
    token = leases.new_token()
    deliveries = []
    for endpoint in endpoints:
        group, _ = leased_batch(endpoint, 2)
        Delivery.objects.filter(pk__in=[d.pk for d in group]).update(lease_token=token)
        deliveries += group

    with CaptureQueriesContext(connection) as queries:
        statuses = _run(deliveries, token)

    # then each endpoint's failure stops only its own batch: the 503's sibling is handed back
    first, second, third = (deliveries[i : i + 2] for i in (0, 2, 4))
    assert [statuses[d.pk] for d in first + third] == ["succeeded"] * 4
    assert [statuses[d.pk] for d in second] == ["failed", "released"]
    assert len(transport.sent) == 5
    # and the task claimed them all in one statement
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len([sql for sql in updates if all(str(d.pk) in sql for d in deliveries)]) == 1
    # and read the three endpoints' signing secrets in one query
    secrets_table = f'"{EndpointSecret._meta.db_table}"'
    assert len([q for q in queries.captured_queries if secrets_table in q["sql"]]) == 1


def test_a_batch_loads_its_endpoint_and_event_type_once(endpoint):
    deliveries, token = leased_batch(endpoint, 4)
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(event_type=deliveries[0].event_type)

    claimed, _ = leases.deliveries_claim(delivery_ids=[d.pk for d in deliveries], token=token)

    assert [d.pk for d in claimed] == sorted(d.pk for d in deliveries)
    # one shared instance each, not a copy per row: what a batch changes on its
    # endpoint is seen by all its deliveries
    assert len({id(d.endpoint) for d in claimed}) == 1
    assert len({id(d.event_type) for d in claimed}) == 1
    assert claimed[0].endpoint.pk == endpoint.pk


def test_a_batch_stops_at_the_first_failure_and_hands_the_rest_back(monkeypatch, endpoint):
    transport = _script(monkeypatch, 200, 503, 200)
    deliveries, token = leased_batch(endpoint, 4)

    statuses = _run(deliveries, token)

    # two went out: the success and the failure; the other two were never sent
    assert len(transport.sent) == 2
    assert [statuses[d.pk] for d in deliveries] == ["succeeded", "failed", "released", "released"]
    assert _rows(deliveries) == [
        ("succeeded", 1, None),
        ("failed", 1, None),
        ("pending", 0, None),
        ("pending", 0, None),
    ]
    # and what was handed back is due again for the scheduler, without an attempt spent
    assert set(due_deliveries().values_list("pk", flat=True)) == {deliveries[2].pk, deliveries[3].pk}
    assert not Attempt.objects.filter(delivery__in=deliveries[2:]).exists()


def test_a_failing_endpoints_batch_goes_on_until_its_circuit_opens(monkeypatch, settings):
    # given an endpoint never yet successful, whose receiver answers 503, and a batch of eight
    settings.HOOKPOST_BREAKER_FAILURE_THRESHOLD = 3
    settings.HOOKPOST_BREAKER_COOLDOWN_SECONDS = 30
    transport = _script(monkeypatch, 503, 503, 503, 503)
    endpoint = EndpointFactory.create(retry_schedule=[60] * 5, last_success_at=None)
    deliveries, token = leased_batch(endpoint, 8)

    statuses = _run(deliveries, token)

    # then it sent one at a time until the third failure opened the circuit
    assert len(transport.sent) == 3
    assert [statuses[d.pk] for d in deliveries] == ["failed"] * 3 + ["deferred"] * 5
    # and the rest waits out the cool-down, no attempt spent, deferred by the open circuit
    rest = Delivery.objects.filter(pk__in=[d.pk for d in deliveries[3:]])
    assert all(29 <= (d.next_attempt_at - timezone.now()).total_seconds() <= 36 for d in rest)
    assert {(d.attempt_count, d.lease_token) for d in rest} == {(0, None)}
    assert breaker.snapshot(endpoint).state == breaker.OPEN


def test_no_send_starts_after_the_budget(monkeypatch, settings, endpoint):
    settings.HOOKPOST_BATCH_SEND_BUDGET_SECONDS = 0
    transport = _script(monkeypatch, 200)
    deliveries, token = leased_batch(endpoint, 3)

    statuses = _run(deliveries, token)

    assert len(transport.sent) == 1
    assert [statuses[d.pk] for d in deliveries] == ["succeeded", "released", "released"]


def test_the_claim_lease_covers_one_timeout_the_margin_and_the_budget(monkeypatch, settings):
    settings.HOOKPOST_LEASE_MARGIN_SECONDS = 7
    settings.HOOKPOST_BATCH_SEND_BUDGET_SECONDS = 3
    deliveries, token = leased_batch(EndpointFactory.create(timeout_seconds=5), 3)

    claimed, lease = leases.deliveries_claim(delivery_ids=[d.pk for d in deliveries], token=token)

    assert [d.pk for d in claimed] == [d.pk for d in deliveries]
    expiries = set(Delivery.objects.filter(lease_token=lease).values_list("lease_expires_at", flat=True))
    [expiry] = expiries
    assert 14 < (expiry - timezone.now()).total_seconds() <= 15


def test_a_half_open_circuit_lets_one_probe_out_of_a_batch(monkeypatch, settings, endpoint):
    settings.HOOKPOST_BREAKER_COOLDOWN_SECONDS = 0
    transport = _script(monkeypatch, 200)
    open_circuit(endpoint)
    deliveries, token = leased_batch(endpoint, 3)

    statuses = _run(deliveries, token)

    assert len(transport.sent) == 1
    assert [statuses[d.pk] for d in deliveries] == ["succeeded", "released", "released"]


def test_a_lost_lease_costs_only_that_delivery_its_record(monkeypatch, endpoint):
    _script(monkeypatch, 200)
    deliveries, token = leased_batch(endpoint, 3)
    lost = deliveries[1]
    record_all = recording.record_all

    def stolen_first(*args: Any, **kwargs: Any) -> Any:
        # while the batch was sending, another worker took over the second delivery
        Delivery.objects.filter(pk=lost.pk).update(lease_token="someone-else")
        return record_all(*args, **kwargs)

    monkeypatch.setattr(recording, "record_all", stolen_first)

    statuses = _run(deliveries, token)

    assert [statuses[d.pk] for d in deliveries] == ["succeeded", "lease_lost", "succeeded"]
    assert _rows(deliveries) == [
        ("succeeded", 1, None),
        ("pending", 0, "someone-else"),
        ("succeeded", 1, None),
    ]
    assert not Attempt.objects.filter(delivery=lost).exists()


class _Gate:
    """A transport whose requests all wait until ``opened`` of them are in flight together
    (or a second has passed); it records the most it saw at once."""

    def __init__(self, opened: int) -> None:
        self.opened = opened
        self.open_now = 0
        self.peak = 0
        self.sent = 0

    async def post(self, *args: Any, **kwargs: Any) -> TransportResult:
        self.sent += 1
        self.open_now += 1
        self.peak = max(self.peak, self.open_now)
        for _ in range(100):
            if self.open_now >= self.opened:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        self.open_now -= 1
        return TransportResult(status=204, duration_ms=10, connected=True)


def test_a_batch_has_as_many_requests_in_flight_as_places_it_holds(monkeypatch):
    # given an endpoint with four places and a batch of ten
    gate = _Gate(opened=4)
    monkeypatch.setattr(outbound, "transport", lambda: gate)
    deliveries, token = leased_batch(
        EndpointFactory.create(max_in_flight=4, last_success_at=timezone.now()), 10
    )

    statuses = _run(deliveries, token)

    # then four requests were in flight at once, never more, and all ten are recorded
    assert gate.peak == 4
    assert statuses == {d.pk: "succeeded" for d in deliveries}
    assert Attempt.objects.filter(delivery__in=deliveries).count() == 10


def test_an_endpoint_never_yet_successful_gets_one_request_at_a_time(monkeypatch):
    # given a new endpoint with four places: not known to answer at all yet
    gate = _Gate(opened=1)
    monkeypatch.setattr(outbound, "transport", lambda: gate)
    endpoint = EndpointFactory.create(max_in_flight=4, last_success_at=None)
    deliveries, token = leased_batch(endpoint, 3)

    statuses = _run(deliveries, token)

    # then its batch went out one request at a time, and its first success lifts that
    assert gate.peak == 1 and set(statuses.values()) == {"succeeded"}
    gate = _Gate(opened=3)
    monkeypatch.setattr(outbound, "transport", lambda: gate)
    deliveries, token = leased_batch(endpoint, 3)
    _run(deliveries, token)
    assert gate.peak == 3


def _run_beside_others(
    monkeypatch: Any, endpoint: Any, *, held: int, batch: int
) -> tuple[_Gate, dict[int, str], list[Delivery]]:
    """Run a batch of ``batch`` to ``endpoint`` while other batches hold ``held`` of its places."""
    others = bulkhead.acquire(
        endpoint_uid=endpoint.uid,
        slow=False,
        lease_seconds=60,
        timeout_seconds=5,
        max_in_flight=held,
        wanted=held,
    )
    assert isinstance(others, bulkhead.Hold) and others.count == held
    gate = _Gate(opened=1)
    monkeypatch.setattr(outbound, "transport", lambda: gate)
    deliveries, token = leased_batch(endpoint, batch)
    statuses = _run(deliveries, token)
    others.release()
    return gate, statuses, deliveries


def test_an_endpoint_not_yet_proven_has_one_request_in_flight_across_its_batches(monkeypatch):
    # given a new endpoint with four places, one request already in flight to it from another batch
    endpoint = EndpointFactory.create(max_in_flight=4, last_success_at=None)
    gate, statuses, deliveries = _run_beside_others(monkeypatch, endpoint, held=1, batch=3)

    # then this batch sent nothing: it waits in the endpoint's line, no attempt spent
    assert gate.peak == 0
    assert statuses == {d.pk: "deferred" for d in deliveries}
    assert not Attempt.objects.filter(delivery__in=deliveries).exists()


def test_a_batch_takes_only_the_places_left_free_under_the_cap(monkeypatch):
    # given an endpoint with four places, three of them held by other batches
    endpoint = EndpointFactory.create(max_in_flight=4, last_success_at=timezone.now())
    gate, statuses, _ = _run_beside_others(monkeypatch, endpoint, held=3, batch=5)

    # then the batch sent one request at a time, and gave its place back
    assert gate.peak == 1
    assert set(statuses.values()) == {"succeeded"}
    assert bulkhead.in_flight(endpoint_uid=endpoint.uid) == 0


def test_a_delivery_that_cannot_be_recorded_does_not_poison_its_batch(monkeypatch, endpoint):
    _script(monkeypatch, 200)
    deliveries, token = leased_batch(endpoint, 3)
    # an inconsistent history: attempt 1 of the middle one already exists, so recording it fails
    Attempt.objects.create(delivery=deliveries[1], number=1, response_status=500)

    statuses = _run(deliveries, token)

    assert [statuses[d.pk] for d in deliveries] == ["succeeded", "pending", "succeeded"]
    middle = Delivery.objects.get(pk=deliveries[1].pk)
    assert (middle.status, middle.attempt_count, middle.internal_failures) == ("pending", 0, 1)
    assert middle.last_error.startswith("internal error: IntegrityError")


def test_a_stale_token_claims_nothing_of_the_batch(monkeypatch, endpoint):
    transport = _script(monkeypatch, 200)
    deliveries, _ = leased_batch(endpoint, 3)

    assert engine.delivery_run_batch(delivery_ids=[d.pk for d in deliveries], token="stale") == {}
    assert transport.sent == []


def test_trouble_handing_back_the_rest_never_costs_the_record_of_what_was_sent(monkeypatch, endpoint):
    # given a batch whose second attempt fails, and a database hiccup when the rest is handed back
    _script(monkeypatch, 200, 503)
    deliveries, token = leased_batch(endpoint, 4)

    def hiccup(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("connection lost")

    monkeypatch.setattr(leases, "release", hiccup)

    statuses = _run(deliveries, token)

    # then both requests that went out are recorded, and the other two keep their lease
    # until it expires (then the scheduler hands them out again, no attempt spent)
    assert [statuses[d.pk] for d in deliveries] == ["succeeded", "failed", "lease_kept", "lease_kept"]
    assert _rows(deliveries)[:2] == [("succeeded", 1, None), ("failed", 1, None)]
    assert [row[:2] for row in _rows(deliveries)[2:]] == [("pending", 0), ("pending", 0)]
    assert Attempt.objects.filter(delivery__in=deliveries).count() == 2
