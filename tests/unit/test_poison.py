"""Poison work: an exception in our own code while handling a delivery is
counted against it (``internal_failures``) and, after
``HOOKPOST_MAX_INTERNAL_FAILURES``, dead-letters it with the reason, so it can
never crash-loop a worker. And a claim that fails changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from deliveries import engine, leases, outbound
from deliveries.models import Attempt, Delivery
from deliveries.scheduler import due_deliveries
from deliveries.transport import TransportResult
from tests.factories import DeliveryFactory

pytestmark = pytest.mark.django_db


def _row(delivery: Delivery) -> Mapping[str, Any]:
    return Delivery.objects.filter(pk=delivery.pk).values().get()


def _dispatch(delivery: Delivery) -> str:
    """What the scheduler does: make the delivery due now and lease it to one task."""
    token = leases.new_token()
    Delivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now(),
        lease_token=token,
        lease_expires_at=timezone.now() + timedelta(seconds=120),
    )
    return token


@pytest.fixture
def delivery() -> Delivery:
    return DeliveryFactory.create(status=Delivery.Status.PENDING, next_attempt_at=timezone.now())


@pytest.fixture
def poison(monkeypatch) -> list[int]:
    """build_request raises RuntimeError, as a bug in our own code would; the calls are counted."""
    calls: list[int] = []

    def broken(delivery: Delivery, endpoint: Any, timestamp: int, secrets: Any = None) -> Any:
        calls.append(delivery.pk)
        raise RuntimeError("cannot build the request")

    monkeypatch.setattr(outbound, "build_request", broken)
    return calls


@pytest.fixture
def never_sent(monkeypatch) -> None:
    """Any request reaching the transport fails the test."""

    class NoTransport:
        async def post(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("nothing may be sent")

    monkeypatch.setattr(outbound, "transport", lambda: NoTransport())


@pytest.mark.parametrize("limit", [1, 3, 5])
def test_internal_errors_are_counted_and_dead_letter_the_delivery_at_the_limit(
    limit, settings, delivery, poison, never_sent
):
    # given a limit of internal failures, and a request builder that always raises
    settings.HOOKPOST_MAX_INTERNAL_FAILURES = limit

    # when the engine runs the delivery again and again, each time it is due
    for failures in range(1, limit):
        started = timezone.now()
        outcome = engine.delivery_run(delivery_id=delivery.pk, token=_dispatch(delivery))

        # then below the limit it stays retryable: pending, backed off, unleased, counted
        row = _row(delivery)
        assert outcome == Delivery.Status.PENDING
        assert row["status"] == Delivery.Status.PENDING
        assert row["internal_failures"] == failures
        assert row["last_error"] == "internal error: RuntimeError: cannot build the request"
        assert row["next_attempt_at"] > started  # backed off, not hot-looping
        assert row["lease_token"] is None and row["lease_expires_at"] is None
        assert row["finished_at"] is None
        assert due_deliveries(now=row["next_attempt_at"]).filter(pk=delivery.pk).exists()
        assert not due_deliveries(now=started).filter(pk=delivery.pk).exists()

    # and at the limit it is a dead letter with the reason
    outcome = engine.delivery_run(delivery_id=delivery.pk, token=_dispatch(delivery))
    row = _row(delivery)
    assert outcome == Delivery.Status.DEAD
    assert row["status"] == Delivery.Status.DEAD
    assert row["internal_failures"] == limit
    assert row["last_error"].startswith("internal error: RuntimeError")
    assert row["next_attempt_at"] is None and row["finished_at"] is not None
    assert row["lease_token"] is None
    assert len(poison) == limit
    # and no attempt was spent or recorded: nothing was sent
    assert row["attempt_count"] == 0
    assert not Attempt.objects.filter(delivery=delivery).exists()
    # and the scheduler does not hand it out again
    assert not due_deliveries(now=timezone.now() + timedelta(days=365)).filter(pk=delivery.pk).exists()


def test_a_dead_lettered_poison_delivery_is_not_run_again(settings, delivery, poison, never_sent):
    # given a delivery dead-lettered by internal errors
    settings.HOOKPOST_MAX_INTERNAL_FAILURES = 1
    assert engine.delivery_run(delivery_id=delivery.pk, token=_dispatch(delivery)) == Delivery.Status.DEAD
    before = _row(delivery)

    # when a stale task for it arrives, with or without a lease token
    outcomes = [
        engine.delivery_run(delivery_id=delivery.pk, token=None),
        engine.delivery_run(delivery_id=delivery.pk, token=before["lease_token"] or "stale"),
    ]

    # then it is not claimed, not built again, and not changed
    assert outcomes == [None, None]
    assert len(poison) == 1
    assert _row(delivery) == before


def test_an_error_in_the_transport_is_counted_the_same_way(settings, monkeypatch, delivery):
    # given a transport that raises (a bug, not a network error it would report)
    settings.HOOKPOST_MAX_INTERNAL_FAILURES = 2

    class Broken:
        async def post(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("bug in the transport")

    monkeypatch.setattr(outbound, "transport", lambda: Broken())

    # when it is run twice
    first = engine.delivery_run(delivery_id=delivery.pk, token=_dispatch(delivery))
    second = engine.delivery_run(delivery_id=delivery.pk, token=_dispatch(delivery))

    # then it is retryable once, then dead with the reason
    assert (first, second) == (Delivery.Status.PENDING, Delivery.Status.DEAD)
    assert _row(delivery)["last_error"] == "internal error: RuntimeError: bug in the transport"


def test_a_failed_delivery_keeps_its_status_while_internal_errors_are_counted(
    settings, delivery, poison, never_sent
):
    # given a delivery waiting for its second attempt
    settings.HOOKPOST_MAX_INTERNAL_FAILURES = 3
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.FAILED, attempt_count=1)

    # when an internal error hits it
    outcome = engine.delivery_run(delivery_id=delivery.pk, token=_dispatch(delivery))

    # then it is still failed (a retry is scheduled), with its attempts as they were
    row = _row(delivery)
    assert outcome == Delivery.Status.FAILED
    assert (row["status"], row["attempt_count"], row["internal_failures"]) == ("failed", 1, 1)


def test_a_real_attempt_after_an_internal_error_resets_the_count(settings, monkeypatch, delivery):
    # given one internal failure behind the delivery
    settings.HOOKPOST_MAX_INTERNAL_FAILURES = 2
    real_build = outbound.build_request
    monkeypatch.setattr(outbound, "build_request", lambda *a: (_ for _ in ()).throw(RuntimeError("once")))
    assert engine.delivery_run(delivery_id=delivery.pk, token=_dispatch(delivery)) == Delivery.Status.PENDING
    assert _row(delivery)["internal_failures"] == 1

    # when the bug is gone and the receiver answers 500
    monkeypatch.setattr(outbound, "build_request", real_build)

    class Failing:
        async def post(self, *args: Any, **kwargs: Any) -> TransportResult:
            return TransportResult(status=500, body=b"oops", duration_ms=2, connected=True)

    monkeypatch.setattr(outbound, "transport", lambda: Failing())
    outcome = engine.delivery_run(delivery_id=delivery.pk, token=_dispatch(delivery))

    # then an ordinary failed attempt is recorded and the internal count starts again,
    # so one more internal error later does not dead-letter it
    row = _row(delivery)
    assert outcome == Delivery.Status.FAILED
    assert (row["attempt_count"], row["internal_failures"], row["last_status_code"]) == (1, 0, 500)


def test_a_database_error_while_recording_rolls_the_move_back_and_is_counted(settings, monkeypatch, delivery):
    # given a delivery whose history is inconsistent (an attempt numbered 1 already
    # exists although none is counted), so recording attempt 1 violates a constraint
    settings.HOOKPOST_MAX_INTERNAL_FAILURES = 2
    Attempt.objects.create(delivery=delivery, number=1, response_status=500)

    class Accepting:
        async def post(self, *args: Any, **kwargs: Any) -> TransportResult:
            return TransportResult(status=200, body=b"ok", duration_ms=2, connected=True)

    monkeypatch.setattr(outbound, "transport", lambda: Accepting())

    # when the engine runs it (the receiver accepts, recording fails)
    first = engine.delivery_run(delivery_id=delivery.pk, token=_dispatch(delivery))

    # then the move to succeeded was rolled back with the attempt, and the error counted
    row = _row(delivery)
    assert first == Delivery.Status.PENDING
    assert (row["status"], row["attempt_count"], row["internal_failures"]) == ("pending", 0, 1)
    assert row["last_error"].startswith("internal error: IntegrityError")
    assert Attempt.objects.filter(delivery=delivery).count() == 1
    # and at the limit it is dead instead of being sent forever
    assert engine.delivery_run(delivery_id=delivery.pk, token=_dispatch(delivery)) == Delivery.Status.DEAD


# --- Claims that fail ------------------------------------------------------------------


def test_a_claim_with_the_wrong_token_returns_none_and_changes_nothing(delivery, poison, never_sent):
    # given a delivery leased to one task
    _dispatch(delivery)
    before = _row(delivery)

    # when another task with a different token, or none at all, runs it
    outcomes = [
        engine.delivery_run(delivery_id=delivery.pk, token="not-the-lease"),
        engine.delivery_run(delivery_id=delivery.pk, token=None),
    ]

    # then neither claims it, nothing is built or sent, and the row is unchanged
    assert outcomes == [None, None]
    assert poison == []
    assert _row(delivery) == before


@pytest.mark.parametrize(
    "state",
    [
        {"status": Delivery.Status.FAILED, "next_attempt_at_in": timedelta(minutes=5)},
        {"status": Delivery.Status.PENDING, "next_attempt_at_in": timedelta(minutes=5)},
        {"status": Delivery.Status.SUCCEEDED, "next_attempt_at_in": None},
        {"status": Delivery.Status.DEAD, "next_attempt_at_in": None},
        {"status": Delivery.Status.SKIPPED, "next_attempt_at_in": None},
        {"status": Delivery.Status.SUCCEEDED, "next_attempt_at_in": -timedelta(minutes=5)},
    ],
    ids=["failed_later", "pending_later", "succeeded", "dead", "skipped", "succeeded_with_past_time"],
)
@pytest.mark.parametrize("with_token", [True, False], ids=["leased", "unleased"])
def test_a_delivery_that_is_not_due_is_not_claimed(state, with_token, delivery, poison, never_sent):
    # given a delivery that is not due (a retry later, or finished)
    token = "the-lease" if with_token else None
    offset = state["next_attempt_at_in"]
    Delivery.objects.filter(pk=delivery.pk).update(
        status=state["status"],
        next_attempt_at=None if offset is None else timezone.now() + offset,
        lease_token=token,
        lease_expires_at=timezone.now() + timedelta(seconds=120) if token else None,
    )
    before = _row(delivery)

    # when a task runs it, even with the right token
    outcome = engine.delivery_run(delivery_id=delivery.pk, token=token)

    # then it is not claimed and nothing changed
    assert outcome is None
    assert poison == []
    assert _row(delivery) == before


def test_a_claim_of_a_missing_delivery_returns_none(db, poison, never_sent):
    assert engine.delivery_run(delivery_id=987654321, token=None) is None
    assert poison == []
