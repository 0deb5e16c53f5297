"""Replay and recover over the API: single replay, a selection, and an endpoint's
failed/dead/skipped deliveries in a time window. A replay re-sends the same
message (same ``webhook-id``) and appends attempts; history is never rewritten."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from deliveries import engine, outbound, tasks
from deliveries.models import Attempt, Delivery, Message
from deliveries.transport import TransportResult
from tests.api.helpers import assert_error, snapshot
from tests.factories import DeliveryFactory, EndpointFactory
from webhooks.models import Endpoint

DELIVERIES = "/api/v1/tenants/acme/deliveries/"


def _replay_url(delivery: Delivery) -> str:
    return f"{DELIVERIES}{delivery.uid}/replay/"


def _recover_url(endpoint: Endpoint, tenant_uid: str = "acme") -> str:
    return f"/api/v1/tenants/{tenant_uid}/endpoints/{endpoint.uid}/recover/"


def _row(delivery: Delivery) -> Mapping[str, Any]:
    return Delivery.objects.filter(pk=delivery.pk).values().get()


def _attempt_rows(delivery: Delivery) -> list[Mapping[str, Any]]:
    return list(Attempt.objects.filter(delivery=delivery).order_by("pk").values())


def make_delivery(endpoint: Endpoint, event_type: Any, status: str, **fields: Any) -> Delivery:
    """A delivery of ``endpoint`` in ``status``, with the history such a delivery has."""
    now = timezone.now()
    shapes: dict[str, dict[str, Any]] = {
        Delivery.Status.PENDING: {"attempt_count": 0, "next_attempt_at": now},
        Delivery.Status.FAILED: {
            "attempt_count": 2,
            "next_attempt_at": now + timedelta(minutes=5),
            "last_status_code": 500,
            "last_error": "HTTP 500",
        },
        Delivery.Status.DEAD: {
            "attempt_count": 2,
            "next_attempt_at": None,
            "last_status_code": 500,
            "last_error": "retries exhausted; HTTP 500",
            "finished_at": now,
        },
        Delivery.Status.SUCCEEDED: {
            "attempt_count": 2,
            "next_attempt_at": None,
            "last_status_code": 200,
            "finished_at": now,
        },
        Delivery.Status.SKIPPED: {
            "attempt_count": 0,
            "next_attempt_at": None,
            "last_error": "endpoint disabled",
        },
    }
    shape = shapes[status]
    delivery = DeliveryFactory.create(
        message__tenant=endpoint.tenant,
        message__event_type=event_type,
        endpoint=endpoint,
        status=status,
        **{**shape, **fields},
    )
    for number in range(1, delivery.attempt_count + 1):
        last = number == delivery.attempt_count
        Attempt.objects.create(
            delivery=delivery,
            number=number,
            duration_ms=10 + number,
            response_status=delivery.last_status_code if last else 500,
            response_body="ok" if last and status == Delivery.Status.SUCCEEDED else "oops",
            request_headers={"webhook-id": delivery.message.uid},
        )
    return delivery


@pytest.fixture
def endpoint(tenant) -> Endpoint:
    return EndpointFactory.create(tenant=tenant)


@pytest.fixture
def handed_over(monkeypatch) -> list[tuple[list[int], str]]:
    """What replay hands to the delivery engine after commit (instead of queueing)."""
    calls: list[tuple[list[int], str]] = []
    monkeypatch.setattr(tasks, "enqueue_fresh", lambda ids, token, *routes: calls.append((list(ids), token)))
    return calls


# --- Single replay -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [Delivery.Status.DEAD, Delivery.Status.SUCCEEDED, Delivery.Status.SKIPPED, Delivery.Status.FAILED],
)
def test_replaying_a_finished_or_retrying_delivery_makes_it_pending_again(
    status, api, endpoint, event_type, handed_over, django_capture_on_commit_callbacks
):
    # given a delivery in that status, already replayed once, with its attempts
    delivery = make_delivery(endpoint, event_type, status, replay_count=1)
    attempts_before = _attempt_rows(delivery)
    message_before = Message.objects.filter(pk=delivery.message_id).values().get()

    # when acme replays it
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(_replay_url(delivery), {}, format="json")
    after = timezone.now()

    # then 202 with the delivery, pending, counted as a replay
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["id"], body["status"], body["replay_count"]) == (delivery.uid, "pending", 2)
    assert body["message"] == delivery.message.uid
    assert body["attempt_count"] == delivery.attempt_count
    # and the row is due now, its next attempt marked as a replay, the retry schedule restarted
    row = _row(delivery)
    assert row["status"] == Delivery.Status.PENDING
    assert row["next_trigger"] == Attempt.Trigger.REPLAY
    assert row["replay_count"] == 2
    assert row["message_id"] == delivery.message_id  # the same message, so the same webhook-id
    assert row["attempt_count"] == delivery.attempt_count
    assert row["schedule_offset"] == delivery.attempt_count
    assert row["next_attempt_at"] is not None and row["next_attempt_at"] <= after
    assert row["finished_at"] is None
    # and it is leased and handed to the engine after commit with that lease
    assert row["lease_token"] and row["lease_expires_at"] > after
    assert handed_over == [([delivery.pk], row["lease_token"])]
    # and neither its history nor its message changed
    assert _attempt_rows(delivery) == attempts_before
    assert Message.objects.filter(pk=delivery.message_id).values().get() == message_before


def test_the_replayed_attempt_has_the_same_webhook_id_and_is_appended_to_the_history(
    api, endpoint, event_type, handed_over, django_capture_on_commit_callbacks, monkeypatch
):
    # given a dead delivery with two attempts, and a receiver that now answers 200
    delivery = make_delivery(endpoint, event_type, Delivery.Status.DEAD)
    attempts_before = _attempt_rows(delivery)
    sent: list[dict[str, str]] = []

    class Receiver:
        async def post(self, url, headers, body, timeout):
            sent.append(headers)
            return TransportResult(status=200, body=b"ok", duration_ms=3, connected=True)

    monkeypatch.setattr(outbound, "transport", lambda: Receiver())

    # when it is replayed and the engine runs the handed-over work
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(_replay_url(delivery), {}, format="json").status_code == 202
    [(ids, token)] = handed_over
    outcome = engine.delivery_run(delivery_id=ids[0], token=token)

    # then it was sent once more with the message's id as webhook-id
    assert outcome == Delivery.Status.SUCCEEDED
    assert [h["webhook-id"] for h in sent] == [delivery.message.uid]
    # and the new attempt follows the old ones, recorded as a replay; the old ones are untouched
    attempts = _attempt_rows(delivery)
    assert attempts[:2] == attempts_before
    assert [(a["number"], a["trigger"], a["response_status"]) for a in attempts[2:]] == [
        (3, Attempt.Trigger.REPLAY, 200)
    ]
    row = _row(delivery)
    assert (row["status"], row["attempt_count"], row["replay_count"]) == (Delivery.Status.SUCCEEDED, 3, 1)


def test_replaying_a_pending_delivery_is_409_and_changes_nothing(
    api, endpoint, event_type, handed_over, django_capture_on_commit_callbacks
):
    # given a pending delivery (not in flight: no lease)
    delivery = make_delivery(endpoint, event_type, Delivery.Status.PENDING)
    before = snapshot()

    # when acme replays it
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post(_replay_url(delivery), {}, format="json")

    # then 409 in the error envelope, nothing changed and nothing handed over
    assert_error(response, 409, "conflict")
    assert snapshot() == before
    assert callbacks == [] and handed_over == []


def test_replaying_a_delivery_held_by_a_live_lease_is_409_and_changes_nothing(
    api, endpoint, event_type, handed_over, django_capture_on_commit_callbacks
):
    # given a failed delivery that a worker is attempting right now
    delivery = make_delivery(
        endpoint,
        event_type,
        Delivery.Status.FAILED,
        next_attempt_at=timezone.now() - timedelta(seconds=1),
        lease_token="worker-lease",
        lease_expires_at=timezone.now() + timedelta(seconds=60),
    )
    before = snapshot()

    # when acme replays it
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post(_replay_url(delivery), {}, format="json")

    # then 409, and the worker's lease and everything else is as it was
    assert_error(response, 409, "conflict")
    assert snapshot() == before
    assert callbacks == [] and handed_over == []


def test_a_delivery_whose_lease_expired_can_be_replayed(api, endpoint, event_type):
    # given a failed delivery whose worker died long ago (its lease expired)
    delivery = make_delivery(
        endpoint,
        event_type,
        Delivery.Status.FAILED,
        lease_token="dead-worker",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )

    # when acme replays it
    response = api.post(_replay_url(delivery), {}, format="json")

    # then it is replayed under a new lease
    assert response.status_code == 202, response.content
    row = _row(delivery)
    assert row["status"] == Delivery.Status.PENDING
    assert row["lease_token"] not in (None, "dead-worker")


def test_replaying_twice_in_a_row_is_409_the_second_time(api, endpoint, event_type):
    # given a dead delivery replayed once
    delivery = make_delivery(endpoint, event_type, Delivery.Status.DEAD)
    assert api.post(_replay_url(delivery), {}, format="json").status_code == 202
    before = snapshot()

    # when it is replayed again before the engine ran it
    response = api.post(_replay_url(delivery), {}, format="json")

    # then 409: it is already pending; replay_count went up only once
    assert_error(response, 409, "conflict")
    assert snapshot() == before
    assert _row(delivery)["replay_count"] == 1


def test_replaying_on_a_disabled_endpoint_is_409_and_changes_nothing(
    api, endpoint, event_type, handed_over, django_capture_on_commit_callbacks
):
    # given a dead delivery of an endpoint that was disabled since
    delivery = make_delivery(endpoint, event_type, Delivery.Status.DEAD)
    Endpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_reason="410 Gone")
    before = snapshot()

    # when acme replays it
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post(_replay_url(delivery), {}, format="json")

    # then 409 and nothing changed
    assert_error(response, 409, "conflict")
    assert snapshot() == before
    assert callbacks == [] and handed_over == []


def test_replaying_an_unknown_delivery_is_404(api, tenant):
    assert_error(api.post(f"{DELIVERIES}dlv_nope/replay/", {}, format="json"), 404, "not_found")


# --- Selection ---------------------------------------------------------------------------


def test_replaying_a_selection_counts_replayed_and_not_replayed(
    api, tenant, other_tenant, endpoint, event_type, handed_over, django_capture_on_commit_callbacks
):
    # given acme's dead, succeeded, skipped, pending and in-flight deliveries,
    # one on a disabled endpoint, and a dead delivery of globex
    dead = make_delivery(endpoint, event_type, Delivery.Status.DEAD)
    succeeded = make_delivery(endpoint, event_type, Delivery.Status.SUCCEEDED)
    skipped = make_delivery(endpoint, event_type, Delivery.Status.SKIPPED)
    pending = make_delivery(endpoint, event_type, Delivery.Status.PENDING)
    in_flight = make_delivery(
        endpoint,
        event_type,
        Delivery.Status.FAILED,
        lease_token="worker",
        lease_expires_at=timezone.now() + timedelta(seconds=60),
    )
    off = EndpointFactory.create(tenant=tenant, enabled=False, disabled_reason="off")
    on_disabled = make_delivery(off, event_type, Delivery.Status.DEAD)
    foreign = make_delivery(EndpointFactory.create(tenant=other_tenant), event_type, Delivery.Status.DEAD)
    untouched = [pending, in_flight, on_disabled, foreign]
    rows_before = {d.pk: _row(d) for d in untouched}
    attempts_before = {d.pk: _attempt_rows(d) for d in [dead, succeeded, skipped, foreign]}

    # when acme replays all of them by id, with globex's id and an unknown one mixed in
    ids = [d.uid for d in [dead, succeeded, skipped, pending, in_flight, on_disabled, foreign]] + ["dlv_nope"]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{DELIVERIES}replay/", {"ids": ids}, format="json")

    # then 202: three replayed; pending, in flight and disabled not; globex's and the
    # unknown id are ignored as if they did not exist
    assert response.status_code == 202, response.content
    assert response.json() == {"replayed": 3, "not_replayed": 3}
    for delivery in [dead, succeeded, skipped]:
        row = _row(delivery)
        assert (row["status"], row["next_trigger"], row["replay_count"]) == ("pending", "replay", 1)
        assert row["message_id"] == delivery.message_id
        # left to the scheduler: due now and not leased
        assert row["lease_token"] is None and row["next_attempt_at"] <= timezone.now()
    # and the others, globex's above all, are exactly as they were
    assert {d.pk: _row(d) for d in untouched} == rows_before
    assert {d.pk: _attempt_rows(d) for d in [dead, succeeded, skipped, foreign]} == attempts_before
    # and a bulk replay does not flood the broker: the scheduler picks them up
    assert handed_over == []


def test_replaying_only_another_tenants_ids_replays_nothing(api, other_tenant, event_type):
    # given a dead delivery of globex
    foreign = make_delivery(EndpointFactory.create(tenant=other_tenant), event_type, Delivery.Status.DEAD)
    before = snapshot()

    # when acme names it in a selection
    response = api.post(f"{DELIVERIES}replay/", {"ids": [foreign.uid]}, format="json")

    # then nothing is replayed or counted, and nothing changed
    assert response.status_code == 202, response.content
    assert response.json() == {"replayed": 0, "not_replayed": 0}
    assert snapshot() == before


@pytest.mark.parametrize("body", [{}, {"ids": []}, {"ids": "dlv_x"}], ids=["missing", "empty", "not_a_list"])
def test_a_selection_without_ids_is_422(api, endpoint, event_type, body):
    make_delivery(endpoint, event_type, Delivery.Status.DEAD)
    before = snapshot()

    details = assert_error(api.post(f"{DELIVERIES}replay/", body, format="json"), 422, "validation_error")

    assert "ids" in details
    assert snapshot() == before


# --- Recover -----------------------------------------------------------------------------


@pytest.fixture
def window(endpoint, tenant, event_type):
    """Deliveries of ``endpoint`` in and around [since, until), and of another endpoint."""
    now = timezone.now()
    since, until = now - timedelta(days=3), now - timedelta(days=1)

    def at(moment, status, ep=endpoint, **fields):
        return make_delivery(ep, event_type, status, created_at=moment, **fields)

    other_endpoint = EndpointFactory.create(tenant=tenant)
    inside = {
        "failed": at(since + timedelta(hours=1), Delivery.Status.FAILED),
        "dead_at_since": at(since, Delivery.Status.DEAD),
        "dead": at(until - timedelta(seconds=1), Delivery.Status.DEAD),
        "skipped": at(since + timedelta(hours=2), Delivery.Status.SKIPPED),
    }
    outside = {
        "succeeded": at(since + timedelta(hours=3), Delivery.Status.SUCCEEDED),
        "pending": at(since + timedelta(hours=4), Delivery.Status.PENDING),
        "in_flight": at(
            since + timedelta(hours=5),
            Delivery.Status.FAILED,
            lease_token="worker",
            lease_expires_at=now + timedelta(seconds=60),
        ),
        "before_since": at(since - timedelta(seconds=1), Delivery.Status.DEAD),
        "at_until": at(until, Delivery.Status.DEAD),
        "after_until": at(until + timedelta(hours=1), Delivery.Status.DEAD),
        "other_endpoint": at(since + timedelta(hours=1), Delivery.Status.DEAD, ep=other_endpoint),
    }
    return {"since": since, "until": until, "inside": inside, "outside": outside}


def test_recover_replays_the_endpoints_failed_dead_and_skipped_deliveries_in_the_window(
    api, endpoint, window, handed_over, django_capture_on_commit_callbacks
):
    # given the deliveries of the window fixture
    outside_before = {name: _row(d) for name, d in window["outside"].items()}
    attempts_before = {name: _attempt_rows(d) for name, d in window["inside"].items()}

    # when acme recovers the endpoint for [since, until)
    body = {"since": window["since"].isoformat(), "until": window["until"].isoformat()}
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(_recover_url(endpoint), body, format="json")

    # then 202 with the number replayed
    assert response.status_code == 202, response.content
    assert response.json() == {"replayed": len(window["inside"])}
    # and exactly the failed/dead/skipped ones created in the window are pending replays
    for name, delivery in window["inside"].items():
        row = _row(delivery)
        assert (row["status"], row["next_trigger"], row["replay_count"]) == ("pending", "replay", 1), name
        assert row["lease_token"] is None and row["next_attempt_at"] <= timezone.now(), name
        assert _attempt_rows(delivery) == attempts_before[name], name
    # and everything else (succeeded, pending, in flight, outside the window,
    # another endpoint's) is exactly as it was
    assert {name: _row(d) for name, d in window["outside"].items()} == outside_before
    # and the scheduler, not the broker, takes them from here
    assert handed_over == []


def test_recover_can_be_limited_to_some_statuses(api, endpoint, window):
    # when acme recovers only the dead deliveries of the window
    body = {"since": window["since"].isoformat(), "until": window["until"].isoformat(), "statuses": ["dead"]}
    response = api.post(_recover_url(endpoint), body, format="json")

    # then only those two are replayed
    assert response.status_code == 202, response.content
    assert response.json() == {"replayed": 2}
    replayed = {name for name, d in window["inside"].items() if _row(d)["status"] == "pending"}
    assert replayed == {"dead", "dead_at_since"}
    assert _row(window["inside"]["failed"])["status"] == "failed"
    assert _row(window["inside"]["skipped"])["status"] == "skipped"


def test_recover_without_until_runs_to_now(api, endpoint, event_type):
    # given a dead delivery from a minute ago and one from before the window
    now = timezone.now()
    recent = make_delivery(endpoint, event_type, Delivery.Status.DEAD, created_at=now - timedelta(minutes=1))
    old = make_delivery(endpoint, event_type, Delivery.Status.DEAD, created_at=now - timedelta(hours=2))

    # when acme recovers the last hour
    last_hour = {"since": (now - timedelta(hours=1)).isoformat()}
    response = api.post(_recover_url(endpoint), last_hour, format="json")

    # then the recent one is replayed, the old one not
    assert response.status_code == 202, response.content
    assert response.json() == {"replayed": 1}
    assert (_row(recent)["status"], _row(old)["status"]) == ("pending", "dead")


@pytest.mark.parametrize("gap", [timedelta(0), -timedelta(hours=1)], ids=["equal", "before"])
def test_recover_with_until_not_after_since_is_422(api, endpoint, window, gap):
    before = snapshot()
    since = window["since"]

    body = {"since": since.isoformat(), "until": (since + gap).isoformat()}
    response = api.post(_recover_url(endpoint), body, format="json")

    details = assert_error(response, 422, "validation_error")
    assert details["until"]
    assert snapshot() == before


@pytest.mark.parametrize("status", ["succeeded", "pending"])
def test_recover_of_succeeded_or_pending_deliveries_is_422(api, endpoint, window, status):
    before = snapshot()

    body = {"since": window["since"].isoformat(), "statuses": ["dead", status]}
    response = api.post(_recover_url(endpoint), body, format="json")

    details = assert_error(response, 422, "validation_error")
    assert [name for name in details if name.split(".")[0] == "statuses"], details
    assert snapshot() == before


@pytest.mark.parametrize(
    "body",
    [{}, {"until": "2030-01-01T00:00:00Z"}, {"since": "yesterday"}],
    ids=["empty", "no_since", "bad_since"],
)
def test_recover_without_a_valid_since_is_422(api, endpoint, window, body):
    before = snapshot()

    details = assert_error(api.post(_recover_url(endpoint), body, format="json"), 422, "validation_error")

    assert details["since"]
    assert snapshot() == before


def test_recover_on_a_disabled_endpoint_is_409_and_changes_nothing(api, endpoint, window):
    # given the endpoint was disabled
    Endpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_reason="410 Gone")
    before = snapshot()

    # when acme recovers it
    response = api.post(_recover_url(endpoint), {"since": window["since"].isoformat()}, format="json")

    # then 409 and nothing changed
    assert_error(response, 409, "conflict")
    assert snapshot() == before


def test_recover_of_another_tenants_endpoint_is_404_and_changes_nothing(api, other_tenant, event_type):
    # given a globex endpoint with a dead delivery
    foreign = EndpointFactory.create(tenant=other_tenant)
    make_delivery(foreign, event_type, Delivery.Status.DEAD, created_at=timezone.now() - timedelta(hours=1))
    before = snapshot()

    # when acme recovers it, under its own uid and under globex's
    since = {"since": (timezone.now() - timedelta(days=1)).isoformat()}
    answers = [
        api.post(_recover_url(foreign, "acme"), since, format="json"),
        api.post(_recover_url(foreign, "globex"), since, format="json"),
    ]

    # then both are 404 and nothing changed
    for response in answers:
        assert_error(response, 404, "not_found")
    assert snapshot() == before


# --- Authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("route", ["replay", "selection", "recover"])
def test_replay_routes_refuse_requests_without_a_key(route, anon_api, endpoint, event_type):
    # given a dead delivery that any of the routes would replay
    an_hour_ago = timezone.now() - timedelta(hours=1)
    delivery = make_delivery(endpoint, event_type, Delivery.Status.DEAD, created_at=an_hour_ago)
    path, body = {
        "replay": (_replay_url(delivery), {}),
        "selection": (f"{DELIVERIES}replay/", {"ids": [delivery.uid]}),
        "recover": (_recover_url(endpoint), {"since": (timezone.now() - timedelta(days=1)).isoformat()}),
    }[route]
    before = snapshot()

    # when it is called without a key
    response = anon_api.post(path, body, format="json")

    # then 401 with a challenge, and the delivery is still dead
    assert_error(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert snapshot() == before
