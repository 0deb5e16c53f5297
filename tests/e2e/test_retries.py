"""Retries, dead letters and replay, 410/Retry-After/redirect handling, through
a real worker, its scheduler (0.25 s tick), Redis, PostgreSQL and a real
receiver.

Timing assertions are lower bounds the engine guarantees (an attempt never
happens before its scheduled time), and the delays it scheduled, read from
its rows; never how soon a loaded machine gets round to an attempt.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from deliveries.models import Attempt, Delivery
from tests.e2e.helpers import (
    Registered,
    assert_ledger,
    attempts_of,
    delivery_of,
    endpoint_row,
    publish,
    register_endpoint,
    wait_for_status,
)
from tests.e2e.receiver import Receiver, Reply

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

JITTER = 0.2  # the default HOOKPOST_RETRY_JITTER the worker runs with
TICK = 0.25  # HOOKPOST_SCHEDULER_INTERVAL_SECONDS in the e2e worker
SLACK = TICK + 1.0  # one tick, plus queueing, claiming and a loaded 2-core CI machine
RECORDING = 0.3  # from the end of the request to the moment the delay is computed (Redis, a busy worker)


def _scheduled_delays(deliveries: list[Delivery], retries: int, timeout: float) -> dict[int, list[float]]:
    """Watch the deliveries' rows and return, per delivery, the delay the engine
    scheduled after each failed attempt: ``next_attempt_at`` minus the end of
    the attempt that failed."""
    seen: dict[int, dict[int, float]] = {d.pk: {} for d in deliveries}
    deadline = time.monotonic() + timeout
    while any(len(s) < retries for s in seen.values()):
        assert time.monotonic() < deadline, f"saw scheduled retries {seen}"
        for row in Delivery.objects.filter(pk__in=seen, status=Delivery.Status.FAILED):
            if row.attempt_count in seen[row.pk] or row.next_attempt_at is None:
                continue
            failed = Attempt.objects.get(delivery_id=row.pk, number=row.attempt_count)
            ended = failed.started_at + timedelta(milliseconds=failed.duration_ms or 0)
            seen[row.pk][row.attempt_count] = (row.next_attempt_at - ended).total_seconds()
        time.sleep(0.02)
    return {pk: [by_number[n] for n in sorted(by_number)] for pk, by_number in seen.items()}


def test_two_failures_then_success_is_three_attempts_with_growing_jittered_delays(
    worker, receiver: Receiver, e2e_settings, make_client, tenant, event_type
):
    # Given four endpoints with the retry schedule [1 s, 2 s] whose receivers
    # fail twice and then succeed
    api = make_client(tenant).client
    endpoints: list[Registered] = []
    for path in ("/a", "/b", "/c", "/d"):
        receiver.script(path, Reply(500), Reply(500), Reply(200))
        endpoints.append(register_endpoint(api, tenant, receiver, path, retry_schedule=[1, 2]))

    # When a message is published to them
    message_id = publish(api, tenant, event_type, {"n": 1})
    deliveries = [delivery_of(message_id, e.uid) for e in endpoints]
    delays = _scheduled_delays(deliveries, retries=2, timeout=20)

    # Then each delivery succeeds on exactly its third attempt
    for endpoint, delivery in zip(endpoints, deliveries, strict=True):
        done = wait_for_status(message_id, endpoint.uid, Delivery.Status.SUCCEEDED)
        attempts = attempts_of(done)
        assert [a.number for a in attempts] == [1, 2, 3]
        assert [a.response_status for a in attempts] == [500, 500, 200]
        assert {a.trigger for a in attempts} == {Attempt.Trigger.SCHEDULED}
        assert done.attempt_count == 3
        got = receiver.received(endpoint.path)
        assert len(got) == 3 and {r.headers["webhook-id"] for r in got} == {message_id}
        # ... no retry reached the receiver before its time: 1 s, then 2 s, less the jitter
        first_gap, second_gap = got[1].at - got[0].at, got[2].at - got[1].at
        assert first_gap >= 1 - JITTER, first_gap
        assert second_gap >= 2 - JITTER * 2, second_gap
        # ... because the engine scheduled delays of 1 s +-20 % and then 2 s +-20 %
        after_first, after_second = delays[delivery.pk]
        assert (1 - JITTER) <= after_first <= (1 + JITTER) + RECORDING, after_first
        assert (2 - JITTER * 2) <= after_second <= (2 + JITTER * 2) + RECORDING, after_second
        assert after_second > after_first

    # And the delays are jittered: the factors applied to the schedule differ
    factors = [d / base for pk in delays for d, base in zip(delays[pk], (1, 2), strict=True)]
    assert max(factors) - min(factors) > 0.05, factors
    assert_ledger(receiver, [message_id], endpoints)


def test_exhausted_delivery_is_dead_and_a_replay_delivers_it_keeping_history(
    worker, receiver: Receiver, e2e_settings, make_client, tenant, event_type
):
    # Given an endpoint with one retry whose receiver always fails
    api = make_client(tenant).client
    receiver.script("/down", Reply(500))
    endpoint = register_endpoint(api, tenant, receiver, "/down", retry_schedule=[1])

    # When a message is published, both attempts fail and the delivery is dead
    message_id = publish(api, tenant, event_type, {"n": 2})
    dead = wait_for_status(message_id, endpoint.uid, Delivery.Status.DEAD)
    assert [a.response_status for a in attempts_of(dead)] == [500, 500]
    assert "retries exhausted" in dead.last_error
    assert len(receiver.received("/down")) == 2

    # When the receiver recovers and the delivery is replayed through the API
    receiver.script("/down", Reply(200))
    replayed = api.post(f"/api/v1/tenants/{tenant.uid}/deliveries/{dead.uid}/replay/")
    assert replayed.status_code == 202, replayed.json()

    # Then it is delivered with the same webhook-id, and every attempt is kept
    done = wait_for_status(message_id, endpoint.uid, Delivery.Status.SUCCEEDED)
    attempts = attempts_of(done)
    assert [a.number for a in attempts] == [1, 2, 3]
    assert [a.trigger for a in attempts] == ["scheduled", "scheduled", "replay"]
    assert [a.response_status for a in attempts] == [500, 500, 200]
    assert done.replay_count == 1
    got = receiver.wait_for(3, "/down")
    assert len(got) == 3 and {r.headers["webhook-id"] for r in got} == {message_id}
    assert_ledger(receiver, [message_id], [endpoint])


def test_410_gone_disables_the_endpoint_and_dead_letters_the_delivery(
    worker, receiver: Receiver, e2e_settings, make_client, tenant, event_type
):
    # Given a receiver that answers 410 Gone, on an endpoint that could retry
    api = make_client(tenant).client
    receiver.script("/gone", Reply(410), Reply(200))
    endpoint = register_endpoint(api, tenant, receiver, "/gone", retry_schedule=[1, 1])

    # When a message is published
    message_id = publish(api, tenant, event_type, {"n": 3})

    # Then the delivery is dead after one attempt and the endpoint disabled with its reason
    dead = wait_for_status(message_id, endpoint.uid, Delivery.Status.DEAD)
    assert [a.response_status for a in attempts_of(dead)] == [410]
    assert "410" in dead.last_error
    row = endpoint_row(endpoint)
    assert row.enabled is False
    assert "410" in row.disabled_reason
    assert row.disabled_at is not None
    shown = api.get(f"/api/v1/tenants/{tenant.uid}/endpoints/{endpoint.uid}/").json()
    assert shown["enabled"] is False and "410" in shown["disabled_reason"]
    # ... and nothing is retried
    time.sleep(1 + JITTER + SLACK)
    assert len(receiver.received("/gone")) == 1
    assert delivery_of(message_id, endpoint.uid).status == Delivery.Status.DEAD


def test_retry_after_on_503_pushes_the_next_attempt_later_than_the_schedule(
    worker, receiver: Receiver, e2e_settings, make_client, tenant, event_type
):
    # Given a receiver that answers 503 with Retry-After: 3, on a 1 s schedule
    api = make_client(tenant).client
    receiver.script("/busy", Reply(503, headers={"Retry-After": "3"}), Reply(200))
    endpoint = register_endpoint(api, tenant, receiver, "/busy", retry_schedule=[1])

    # When a message is published
    message_id = publish(api, tenant, event_type, {"n": 4})

    # Then the second attempt waits for the 3 s the receiver asked for, not ~1 s
    first, second = receiver.wait_for(2, "/busy", timeout=15)
    gap = second.at - first.at
    assert gap >= 3.0, gap
    done = wait_for_status(message_id, endpoint.uid, Delivery.Status.SUCCEEDED)
    attempts = attempts_of(done)
    assert [a.response_status for a in attempts] == [503, 200]
    assert attempts[0].response_headers.get("retry-after") == "3"
    assert_ledger(receiver, [message_id], [endpoint])


def test_a_redirect_is_a_failed_attempt_and_its_location_is_never_requested(
    worker, receiver: Receiver, e2e_settings, make_client, tenant, event_type
):
    # Given a receiver that first redirects to another path it serves
    api = make_client(tenant).client
    elsewhere = receiver.script("/elsewhere", Reply(200))
    receiver.script("/moved", Reply(302, headers={"Location": elsewhere}), Reply(200))
    endpoint = register_endpoint(api, tenant, receiver, "/moved", retry_schedule=[1])

    # When a message is published
    message_id = publish(api, tenant, event_type, {"n": 5})

    # Then the 302 is recorded as a failed attempt, the retry goes to the endpoint's URL
    done = wait_for_status(message_id, endpoint.uid, Delivery.Status.SUCCEEDED)
    attempts = attempts_of(done)
    assert [a.response_status for a in attempts] == [302, 200]
    assert attempts[0].error_class == "HTTPStatus" and "302" in attempts[0].error_message
    assert attempts[0].response_headers.get("location") == elsewhere
    # ... and the Location target is never requested
    assert receiver.received("/elsewhere") == []
    assert [r.path for r in receiver.received()] == ["/moved", "/moved"]
    assert_ledger(receiver, [message_id], [endpoint])
