"""The engine meets endpoint protection: a delivery refused by the breaker,
the bulkhead or the rate limit is deferred -- next_attempt_at moves forward,
the lease is released, no Attempt is written and the attempt count stays --
and what admission granted (the probe, the places) is always handed back."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any, cast

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deliveries import (
    breaker,
    bulkhead,
    engine,
    leases,
    line,
    outbound,
    ratelimit,
    send_loop,
    shared_state,
    tasks,
)
from deliveries.models import Attempt, Delivery, Message
from deliveries.scheduler import due_deliveries
from deliveries.signals import delivery_deferred
from tests.factories import DeliveryFactory, EndpointFactory
from tests.unit.protection_helpers import ScriptedTransport, open_circuit, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def transport(monkeypatch) -> ScriptedTransport:
    scripted = ScriptedTransport(200)
    monkeypatch.setattr(outbound, "transport", lambda: scripted)
    return scripted


@pytest.fixture
def deferrals() -> Any:
    seen: list[dict[str, Any]] = []

    def note(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    delivery_deferred.connect(note)
    yield seen
    delivery_deferred.disconnect(note)


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> Any:
    """What the engine hands to workers outside the scheduler: (ids, token) pairs."""
    seen: list[tuple[list[int], str]] = []
    monkeypatch.setattr(tasks, "enqueue_fresh", lambda ids, token, *routes: seen.append((list(ids), token)))
    return seen


def _hold_the_only_place(endpoint: Any, lease_seconds: float = 30) -> bulkhead.Hold:
    held = bulkhead.acquire(
        endpoint_uid=endpoint.uid, slow=False, lease_seconds=lease_seconds, timeout_seconds=1
    )
    assert isinstance(held, bulkhead.Hold)
    return held


def _delivery_to(endpoint: Any) -> Delivery:
    return DeliveryFactory.create(endpoint=endpoint, tenant=endpoint.tenant, message__tenant=endpoint.tenant)


def _delivery(**endpoint_fields: Any) -> Delivery:
    endpoint = EndpointFactory.create(**endpoint_fields)
    return DeliveryFactory.create(endpoint=endpoint, tenant=endpoint.tenant, message__tenant=endpoint.tenant)


def _assert_deferred_without_an_attempt(
    delivery: Delivery, before: Delivery, *, at_least: float, at_most: float
):
    after = Delivery.objects.get(pk=delivery.pk)
    assert after.status == before.status
    assert after.attempt_count == before.attempt_count
    assert after.lease_token is None and after.lease_expires_at is None
    assert not Attempt.objects.filter(delivery=delivery).exists()
    wait = (after.next_attempt_at - timezone.now()).total_seconds()
    assert at_least - 0.5 <= wait <= at_most, wait
    return after


def test_a_delivery_meeting_an_open_circuit_is_deferred_to_its_end_without_an_attempt(transport, deferrals):
    # given a failed delivery (2 attempts spent) to an endpoint whose circuit is open (30 s)
    delivery = _delivery()
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.FAILED, attempt_count=2)
    open_circuit(delivery.endpoint)
    before = Delivery.objects.get(pk=delivery.pk)

    # when a worker picks it up
    outcome = run(delivery)

    # then nothing is sent; it waits for the cool-down (+ jitter) keeping its attempt count
    assert outcome == "deferred"
    assert transport.sent == []
    _assert_deferred_without_an_attempt(delivery, before, at_least=29, at_most=30 + 3.1)
    assert not due_deliveries().filter(pk=delivery.pk).exists()
    assert deferrals[-1]["reason"] == "circuit_open" and deferrals[-1]["delivery_uid"] == delivery.uid


def test_after_the_cooldown_one_delivery_probes_and_the_others_wait_for_it(settings, monkeypatch):
    settings.HOOKPOST_BREAKER_COOLDOWN_SECONDS = 0.2
    endpoint = EndpointFactory.create()
    deliveries = [
        DeliveryFactory.create(endpoint=endpoint, tenant=endpoint.tenant, message__tenant=endpoint.tenant)
        for _ in range(3)
    ]
    open_circuit(endpoint)
    time.sleep(0.25)
    # the others are tried once the probe is admitted, before its request goes out
    others: list[str | None] = []
    real_run = send_loop.run

    def others_first(sends: Any) -> Any:
        if not others:
            others.extend(run(d) for d in deliveries[1:])
        return real_run(sends)

    monkeypatch.setattr(send_loop, "run", others_first)
    monkeypatch.setattr(outbound, "transport", lambda: ScriptedTransport(200))

    assert run(deliveries[0]) == "succeeded"

    assert others == ["deferred", "deferred"]
    assert breaker.snapshot(endpoint).state == "closed"


def test_a_full_endpoint_keeps_the_delivery_due_under_the_lines_lease(settings, transport, deferrals):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 1
    settings.HOOKPOST_BULKHEAD_RETRY_SECONDS = 1
    delivery = _delivery()
    held = _hold_the_only_place(delivery.endpoint)
    before = Delivery.objects.get(pk=delivery.pk)

    assert run(delivery) == "deferred"

    after = Delivery.objects.get(pk=delivery.pk)
    assert (after.status, after.attempt_count) == (before.status, before.attempt_count)
    assert after.next_attempt_at <= timezone.now()  # still due: only the lease holds it
    assert not Attempt.objects.filter(delivery=delivery).exists()
    # the line's lease keeps the scheduler off until the held place's lease (30 s) ends...
    assert 29 <= (after.lease_expires_at - timezone.now()).total_seconds() <= 31.01
    assert not due_deliveries().filter(pk=delivery.pk).exists()
    assert deferrals[-1]["reason"] == "bulkhead"
    # ...and the line holds what to send on when a place frees
    entry = json.loads(bulkhead.next_in_line(endpoint_uid=delivery.endpoint.uid) or "{}")
    assert (entry["ids"], entry["token"]) == ([delivery.pk], after.lease_token)
    held.release()
    assert engine.delivery_run(delivery_id=delivery.pk, token=after.lease_token) == "succeeded"


def test_the_batch_that_frees_a_place_sends_on_the_first_in_line(settings, transport, enqueued):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 1
    endpoint = EndpointFactory.create()
    waiting, other = _delivery_to(endpoint), _delivery_to(endpoint)
    held = _hold_the_only_place(endpoint)
    assert run(waiting) == "deferred"
    held.release()

    assert run(other) == "succeeded"  # took the freed place, then freed it again

    token = Delivery.objects.get(pk=waiting.pk).lease_token
    assert enqueued == [([waiting.pk], token)]
    assert engine.delivery_run(delivery_id=waiting.pk, token=token) == "succeeded"
    assert bulkhead.in_flight(endpoint_uid=endpoint.uid) == 0


def test_places_freed_together_send_on_as_many_waiting_batches_as_want_them(settings, transport, enqueued):
    # given a proven endpoint with three places, all held, and four batches waiting in its
    # line: one of two deliveries, then three of one
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 3
    endpoint = EndpointFactory.create(last_success_at=timezone.now())
    held = bulkhead.acquire(
        endpoint_uid=endpoint.uid, slow=False, lease_seconds=30, timeout_seconds=1, wanted=3
    )
    assert isinstance(held, bulkhead.Hold) and held.count == 3
    pair = [_delivery_to(endpoint), _delivery_to(endpoint)]
    singles = [_delivery_to(endpoint) for _ in range(3)]
    for batch in (pair, *([d] for d in singles)):
        token = leases.new_token()
        Delivery.objects.filter(pk__in=[d.pk for d in batch]).update(
            lease_token=token, next_attempt_at=timezone.now()
        )
        statuses = engine.delivery_run_batch(delivery_ids=[d.pk for d in batch], token=token)
        assert set(statuses.values()) == {"deferred"}

    # when the batch holding the three places finishes
    held.release()
    line.send_on_next_in_line(endpoint.uid, places=held.count)

    # then the first two in line, wanting three places between them, are sent on
    assert [ids for ids, _ in enqueued] == [sorted(d.pk for d in pair), [singles[0].pk]]


def test_a_place_freed_before_the_batch_joined_the_line_sends_it_on_at_once(
    settings, transport, enqueued, monkeypatch
):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 1
    endpoint = EndpointFactory.create()
    waiting = _delivery_to(endpoint)
    held = _hold_the_only_place(endpoint)
    join = bulkhead.wait_in_line

    def freed_meanwhile(**kwargs: Any) -> bool:
        # the holder finishes between the refusal and the joining, and finds the line empty
        held.release()
        assert bulkhead.next_in_line(endpoint_uid=endpoint.uid) is None
        return join(**kwargs)

    monkeypatch.setattr(bulkhead, "wait_in_line", freed_meanwhile)

    assert run(waiting) == "deferred"

    token = Delivery.objects.get(pk=waiting.pk).lease_token
    assert enqueued == [([waiting.pk], token)]
    assert engine.delivery_run(delivery_id=waiting.pk, token=token) == "succeeded"


def test_joining_the_line_says_whether_a_place_is_free(settings):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 10
    endpoint = EndpointFactory.create()
    assert bulkhead.wait_in_line(endpoint_uid=endpoint.uid, entry="a", seconds=30) is True
    held = [_hold_the_only_place(endpoint) for _ in range(10)]
    assert bulkhead.wait_in_line(endpoint_uid=endpoint.uid, entry="b", seconds=30) is False
    held[0].release()
    assert bulkhead.wait_in_line(endpoint_uid=endpoint.uid, entry="c", seconds=30) is True
    line = cast("list[bytes]", shared_state.client().lrange(shared_state.key("waiting", endpoint.uid), 0, -1))
    assert line == [b"a", b"b", b"c"]


def test_a_place_given_back_on_a_rate_limit_refusal_goes_to_the_first_in_line(settings, transport, enqueued):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 1
    settings.HOOKPOST_RATE_LIMIT_BURST_SECONDS = 1
    endpoint = EndpointFactory.create(rate_limit=1)
    waiting, other = _delivery_to(endpoint), _delivery_to(endpoint)
    held = _hold_the_only_place(endpoint)
    assert run(waiting) == "deferred"  # in line
    held.release()  # freed without sending anyone on (a holder whose worker died)
    ratelimit.take(endpoint_uid=endpoint.uid, rate=1, delivery_uid="dlv_someone_else")  # no token left

    # when another batch takes the free place, and the rate limit then refuses it
    assert run(other) == "deferred"

    # then the place it gave back goes to the batch waiting in line
    token = Delivery.objects.get(pk=waiting.pk).lease_token
    assert enqueued == [([waiting.pk], token)]
    assert bulkhead.in_flight(endpoint_uid=endpoint.uid) == 0


def test_a_batch_for_a_full_endpoint_joins_its_line_before_anything_is_claimed(
    settings, transport, deferrals
):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 1
    settings.HOOKPOST_BULKHEAD_RETRY_SECONDS = 1
    endpoint = EndpointFactory.create()
    batch = [_delivery_to(endpoint) for _ in range(3)]
    elsewhere = _delivery_to(endpoint)  # in the task, but leased to someone else since
    dispatch_lease, ids = leases.new_token(), [d.pk for d in batch]
    leased_until = timezone.now() + timedelta(seconds=120)
    due = {"next_attempt_at": timezone.now(), "lease_expires_at": leased_until}
    Delivery.objects.filter(pk__in=ids).update(lease_token=dispatch_lease, **due)
    Delivery.objects.filter(pk=elsewhere.pk).update(lease_token="other", **due)
    held = _hold_the_only_place(endpoint)

    # when a worker takes the dispatcher's task (which names the endpoint) while every place is held
    with CaptureQueriesContext(connection) as queries:
        statuses = engine.delivery_run_batch(
            delivery_ids=[*ids, elsewhere.pk], token=dispatch_lease, endpoint_uid=endpoint.uid
        )

    # then the batch waits in line, deferred, and nothing was loaded to find that out
    assert statuses == dict.fromkeys(ids, "deferred")
    loaded = (Message._meta.db_table, endpoint._meta.db_table)
    assert not [q["sql"] for q in queries.captured_queries if any(table in q["sql"] for table in loaded)]
    assert transport.sent == []
    rows = Delivery.objects.filter(pk__in=ids)
    (line_lease,) = {row.lease_token for row in rows}
    assert line_lease != dispatch_lease
    # under a lease that ends with the held place's (30 s), jittered by at most a second: till
    # then only a batch that finishes frees a place, and it sends the line on
    assert all(29 < (row.lease_expires_at - timezone.now()).total_seconds() <= 31.01 for row in rows)
    assert all(row.next_attempt_at <= timezone.now() and row.attempt_count == 0 for row in rows)
    assert Delivery.objects.get(pk=elsewhere.pk).lease_token == "other"
    entry = json.loads(bulkhead.next_in_line(endpoint_uid=endpoint.uid) or "{}")
    assert (entry["ids"], entry["token"]) == (sorted(ids), line_lease)
    assert sorted(d["delivery_uid"] for d in deferrals) == sorted(d.uid for d in batch)
    assert {(d["reason"], d["endpoint_uid"], d["tenant_id"]) for d in deferrals} == {
        ("bulkhead", endpoint.uid, endpoint.tenant_id)
    }
    # and once a place frees, the line's lease claims and sends them
    held.release()
    assert engine.delivery_run_batch(
        delivery_ids=ids, token=line_lease, endpoint_uid=endpoint.uid
    ) == dict.fromkeys(ids, "succeeded")


@pytest.mark.parametrize("breaker_state", ["open", "slow"])
def test_a_full_endpoint_whose_breaker_is_not_closed_is_left_to_the_breaker(settings, breaker_state):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 1
    endpoint = EndpointFactory.create()
    _hold_the_only_place(endpoint)  # a request hanging until its timeout
    assert bulkhead.place_wait(endpoint_uid=endpoint.uid) is not None
    fields = {"state": "open"} if breaker_state == "open" else {"state": "closed", "slow": 1}
    shared_state.client().hset(shared_state.key("breaker", endpoint.uid), mapping=fields)

    # then the look says nothing: the claim goes ahead and admission asks the breaker first
    assert bulkhead.place_wait(endpoint_uid=endpoint.uid) is None


def test_a_task_queued_before_tasks_named_their_endpoint_still_delivers(transport, monkeypatch):
    # the task's batch is finished in this thread (a worker's recorder threads have their
    # own database connections, outside this test's transaction)
    monkeypatch.setattr(engine, "delivery_start_batch", engine.delivery_run_batch)
    delivery = _delivery()
    lease = leases.new_token()
    Delivery.objects.filter(pk=delivery.pk).update(lease_token=lease, next_attempt_at=timezone.now())

    tasks.deliver_batch([delivery.pk], lease)  # the old shape: no endpoint_uid
    tasks.deliver_batch([], lease, endpoint_uid=delivery.endpoint.uid, added_later=True)  # a newer shape

    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.SUCCEEDED
    assert len(transport.sent) == 1


def test_a_batch_for_an_endpoint_with_a_free_place_is_claimed_and_sent(settings, transport):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 2
    endpoint = EndpointFactory.create(last_success_at=timezone.now())  # proven: its own cap, not one
    delivery = _delivery_to(endpoint)
    _hold_the_only_place(endpoint)  # one of two
    lease = leases.new_token()
    Delivery.objects.filter(pk=delivery.pk).update(lease_token=lease, next_attempt_at=timezone.now())

    statuses = engine.delivery_run_batch(delivery_ids=[delivery.pk], token=lease, endpoint_uid=endpoint.uid)

    assert statuses == {delivery.pk: "succeeded"}
    assert bulkhead.place_wait(endpoint_uid=endpoint.uid) is None


def test_a_lapsed_or_lost_line_ends_as_a_plain_deferral(settings, transport, enqueued):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 1
    settings.HOOKPOST_BULKHEAD_RETRY_SECONDS = 0.05
    endpoint = EndpointFactory.create()
    lapsed, lost, other = _delivery_to(endpoint), _delivery_to(endpoint), _delivery_to(endpoint)
    _hold_the_only_place(endpoint, lease_seconds=0.05)  # its holder died
    assert run(lapsed) == "deferred"
    time.sleep(0.25)  # its lease (0.05-0.1 s) ended while it waited in line
    held = _hold_the_only_place(endpoint)
    assert run(lost) == "deferred"
    shared_state.client().delete(shared_state.key("waiting", endpoint.uid))  # Redis lost the line
    held.release()

    assert run(other) == "succeeded"

    # nothing to send on: the lapsed entry was skipped, the other is gone...
    assert enqueued == []
    # ...and the scheduler hands out what waited once its lease ends
    assert set(due_deliveries().values_list("pk", flat=True)) == {lapsed.pk}
    lost_lease = Delivery.objects.get(pk=lost.pk).lease_expires_at
    assert lost.pk in set(due_deliveries(lost_lease + timedelta(seconds=1)).values_list("pk", flat=True))


def test_over_the_rate_limit_a_delivery_waits_for_its_reserved_slot(settings, transport, deferrals):
    settings.HOOKPOST_RATE_LIMIT_BURST_SECONDS = 1
    endpoint = EndpointFactory.create(rate_limit=1)
    first, second = (
        DeliveryFactory.create(endpoint=endpoint, tenant=endpoint.tenant, message__tenant=endpoint.tenant)
        for _ in range(2)
    )
    assert run(first) == "succeeded"
    before = Delivery.objects.get(pk=second.pk)

    assert run(second) == "deferred"

    _assert_deferred_without_an_attempt(second, before, at_least=0.9, at_most=1.01)
    assert deferrals[-1]["reason"] == "rate_limited"
    # it comes back on its reservation and goes through
    assert run(second) == "succeeded"
    assert len(transport.sent) == 2


def test_a_probe_refused_by_the_rate_limit_is_handed_back(settings, transport):
    settings.HOOKPOST_BREAKER_COOLDOWN_SECONDS = 0.1
    settings.HOOKPOST_RATE_LIMIT_BURST_SECONDS = 1
    endpoint = EndpointFactory.create(rate_limit=1)
    delivery = DeliveryFactory.create(
        endpoint=endpoint, tenant=endpoint.tenant, message__tenant=endpoint.tenant
    )
    ratelimit.take(endpoint_uid=endpoint.uid, rate=1, delivery_uid="dlv_someone_else")  # the token is gone
    open_circuit(endpoint)
    time.sleep(0.15)

    # when the cooled-down circuit makes this delivery its probe but the rate limit refuses it
    assert run(delivery) == "deferred"

    # then the probe is free for the next caller at once
    assert breaker.admit(endpoint, probe_lease_seconds=5).probe


def test_an_internal_error_after_admission_hands_back_the_probe_and_the_place(settings, monkeypatch):
    settings.HOOKPOST_BREAKER_COOLDOWN_SECONDS = 0.1
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 1
    delivery = _delivery()
    open_circuit(delivery.endpoint)
    time.sleep(0.15)
    monkeypatch.setattr(outbound, "build_request", lambda *a: (_ for _ in ()).throw(RuntimeError("bug")))

    assert run(delivery) == Delivery.Status.PENDING  # counted as an internal failure

    assert bulkhead.in_flight(endpoint_uid=delivery.endpoint.uid) == 0
    assert breaker.admit(delivery.endpoint, probe_lease_seconds=5).probe


def test_attempts_are_counted_in_the_breaker_and_free_their_place(settings, monkeypatch):
    settings.HOOKPOST_ENDPOINT_MAX_IN_FLIGHT = 1
    endpoint = EndpointFactory.create(retry_schedule=[1] * 10)
    monkeypatch.setattr(outbound, "transport", lambda: ScriptedTransport(503))
    deliveries = [
        DeliveryFactory.create(endpoint=endpoint, tenant=endpoint.tenant, message__tenant=endpoint.tenant)
        for _ in range(6)
    ]

    outcomes = [run(d) for d in deliveries]

    # five 503s open the circuit; the sixth delivery is deferred, not sent
    assert outcomes == ["failed"] * 5 + ["deferred"]
    assert breaker.snapshot(endpoint).state == "open"
    assert bulkhead.in_flight(endpoint_uid=endpoint.uid) == 0
    row = endpoint.__class__.objects.get(pk=endpoint.pk)
    assert (row.circuit_state, row.consecutive_failures) == ("open", 5)
    assert row.failing_since is not None and row.failing_since <= timezone.now() - timedelta(seconds=0)


def test_an_endpoint_that_stays_full_keeps_only_the_newest_of_its_line():
    endpoint = EndpointFactory.create()
    for n in range(bulkhead._LINE_MAX + 5):
        bulkhead.wait_in_line(endpoint_uid=endpoint.uid, entry=str(n), seconds=30)

    line = cast("list[bytes]", shared_state.client().lrange(shared_state.key("waiting", endpoint.uid), 0, -1))

    assert [int(entry) for entry in line] == list(range(5, bulkhead._LINE_MAX + 5))
