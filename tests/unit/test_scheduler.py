"""The scheduler hands every due delivery out once, to the right queue, and only
after its lease is committed; the Celery side puts the work in Redis.

These tests commit for real (``transaction=True``): two schedulers run at once
in two threads, each with its own PostgreSQL connection, and ``on_commit``
hooks fire as in production.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config import metrics
from config.celery import FIRST_QUEUE, RETRY_QUEUE
from deliveries import dispatch, leases, scheduler, tasks
from deliveries.lanes import Lane
from deliveries.models import Delivery
from deliveries.services import NewMessage, message_publish_batch
from tests.factories import DeliveryFactory, EndpointFactory, EventTypeFactory, MessageFactory, TenantFactory

pytestmark = pytest.mark.django_db(transaction=True)

Call = tuple[list[int], str, Lane]


class Recorder:
    """An enqueue callback that records what it was handed (thread-safe)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def __call__(self, ids: list[int], token: str, lane: Lane) -> None:
        with self._lock:
            self.calls.append((list(ids), token, lane))

    @property
    def ids(self) -> list[int]:
        return [pk for ids, _, _ in self.calls for pk in ids]


@pytest.fixture
def make_due() -> Callable[..., Delivery]:
    """``make_due(**fields)``: a delivery of one endpoint, due a second ago unless told otherwise."""
    tenant = TenantFactory.create()
    endpoint = EndpointFactory.create(tenant=tenant, last_success_at=timezone.now())  # proven: first lane

    def make(**fields: Any) -> Delivery:
        fields.setdefault("next_attempt_at", timezone.now() - timedelta(seconds=1))
        return DeliveryFactory.create(
            message=MessageFactory.create(tenant=tenant), endpoint=endpoint, **fields
        )

    return make


def _in_threads(*targets: Callable[[], Any]) -> list[BaseException]:
    """Run each target in its own thread (own DB connection); return their errors."""
    errors: list[BaseException] = []

    def run(target: Callable[[], Any]) -> None:
        try:
            target()
        except BaseException as exc:  # reported to the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "a scheduler thread hung"
    return errors


def _lease_of(pks: list[int]) -> set[str | None]:
    return set(Delivery.objects.filter(pk__in=pks).values_list("lease_token", flat=True))


# --- Dispatched once ---------------------------------------------------------------------


def test_two_schedulers_inside_their_transactions_at_once_never_take_the_same_delivery(make_due, monkeypatch):
    # given ten due deliveries, and two schedulers that both stop inside their
    # claiming transaction (rows selected and leased, not yet committed) until
    # the other one is there too
    due = [make_due() for _ in range(10)]
    both_claimed = threading.Barrier(2, timeout=10)

    def on_commit(hook: Callable[[], None], *args: Any, **kwargs: Any) -> None:
        both_claimed.wait()  # raises BrokenBarrierError if the other one is blocked
        transaction.on_commit(hook, *args, **kwargs)

    stopping = SimpleNamespace(atomic=transaction.atomic, on_commit=on_commit)
    monkeypatch.setattr(scheduler, "transaction", stopping)
    recorders = [Recorder(), Recorder()]

    # when both dispatch at most four
    errors = _in_threads(*[lambda r=r: scheduler.dispatch_due(enqueue=r, limit=4) for r in recorders])

    # then neither blocked on the other's locked rows, and they took disjoint sets of four
    assert errors == []
    first, second = (set(r.ids) for r in recorders)
    assert len(first) == len(second) == 4
    assert first.isdisjoint(second)
    assert first | second <= {d.pk for d in due}
    # and each set carries its own scheduler's lease
    for recorder in recorders:
        [(_, token, _)] = recorder.calls
        assert _lease_of(recorder.ids) == {token}


def test_schedulers_racing_through_a_backlog_hand_every_delivery_out_exactly_once(make_due):
    # given a backlog of 60 due deliveries
    due = {make_due().pk for _ in range(60)}
    start = threading.Barrier(3, timeout=10)
    recorders = [Recorder() for _ in range(3)]

    def drain(recorder: Recorder) -> None:
        start.wait()
        while scheduler.dispatch_due(enqueue=recorder, limit=5).dispatched:
            pass

    # when three schedulers drain it at the same time, five at a time
    errors = _in_threads(*[lambda r=r: drain(r) for r in recorders])

    # then every delivery was handed out exactly once
    assert errors == []
    handed_out = [pk for r in recorders for pk in r.ids]
    assert sorted(handed_out) == sorted(due)
    assert len(handed_out) == len(set(handed_out))


# --- What is due -------------------------------------------------------------------------


def test_only_due_deliveries_without_a_live_lease_are_dispatched(make_due, settings):
    # given due deliveries with no lease and with an expired one, and others that
    # are leased, not yet due, or finished
    now = timezone.now()
    unleased = make_due()
    expired = make_due(lease_token="dead-worker", lease_expires_at=now - timedelta(seconds=1))
    retry = make_due(status=Delivery.Status.FAILED, attempt_count=1)
    live = make_due(lease_token="busy-worker", lease_expires_at=now + timedelta(seconds=60))
    later = make_due(next_attempt_at=now + timedelta(minutes=5))
    unscheduled = make_due(next_attempt_at=None)
    finished = [
        make_due(status=status)
        for status in (Delivery.Status.SUCCEEDED, Delivery.Status.DEAD, Delivery.Status.SKIPPED)
    ]
    left_alone = [live, later, unscheduled, *finished]
    before = {row["id"]: row for row in Delivery.objects.filter(pk__in=[d.pk for d in left_alone]).values()}
    recorder = Recorder()

    # when the scheduler runs
    report = scheduler.dispatch_due(enqueue=recorder, limit=100)

    # then exactly the due, unleased or expired ones are handed out, under a fresh lease
    assert sorted(recorder.ids) == sorted([unleased.pk, expired.pk, retry.pk])
    assert report.dispatched == 3
    token = recorder.calls[0][1]
    assert token not in ("dead-worker", "busy-worker")
    assert _lease_of(recorder.ids) == {token}
    lease_ends = Delivery.objects.filter(pk__in=recorder.ids).values_list("lease_expires_at", flat=True)
    lease = timedelta(seconds=settings.HOOKPOST_DISPATCH_LEASE_SECONDS)
    assert all(now + lease - timedelta(seconds=5) < end <= timezone.now() + lease for end in lease_ends)
    # and the others, the live lease above all, are untouched
    after = {row["id"]: row for row in Delivery.objects.filter(pk__in=[d.pk for d in left_alone]).values()}
    assert after == before


def test_a_dispatched_delivery_is_not_dispatched_again_while_its_lease_lives(make_due):
    # given a due delivery that was just dispatched
    delivery = make_due()
    first = Recorder()
    scheduler.dispatch_due(enqueue=first, limit=10)
    assert first.ids == [delivery.pk]

    # when the scheduler runs again
    again = Recorder()
    report = scheduler.dispatch_due(enqueue=again, limit=10)

    # then it hands out nothing
    assert (report.dispatched, again.calls) == (0, [])

    # and once that lease expired (the task was lost), it hands it out again
    Delivery.objects.filter(pk=delivery.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    third = Recorder()
    scheduler.dispatch_due(enqueue=third, limit=10)
    assert third.ids == [delivery.pk]
    assert third.calls[0][1] != first.calls[0][1]


def test_first_attempts_and_retries_are_handed_to_their_own_enqueue(make_due):
    # given two first attempts and two retries, due in this order
    now = timezone.now()
    failed = Delivery.Status.FAILED
    fresh_1 = make_due(next_attempt_at=now - timedelta(seconds=40))
    retry_1 = make_due(status=failed, attempt_count=1, next_attempt_at=now - timedelta(seconds=30))
    fresh_2 = make_due(next_attempt_at=now - timedelta(seconds=20))
    retry_2 = make_due(status=failed, attempt_count=4, next_attempt_at=now - timedelta(seconds=10))
    recorder = Recorder()

    # when the scheduler runs
    report = scheduler.dispatch_due(enqueue=recorder, limit=10)

    # then first attempts go to the first-attempt enqueue, retries to the retry one, oldest first
    token = recorder.calls[0][1]
    assert recorder.calls == [
        ([fresh_1.pk, fresh_2.pk], token, Lane.FIRST),
        ([retry_1.pk, retry_2.pk], token, Lane.RETRY),
    ]
    assert (report.dispatched, report.first_attempts, report.retries) == (4, 2, 2)


def test_a_replayed_delivery_with_attempts_goes_to_the_retry_enqueue(make_due):
    # given a delivery replayed after two attempts: pending again, attempts kept
    replayed = make_due(status=Delivery.Status.PENDING, attempt_count=2, next_trigger="replay")
    recorder = Recorder()

    # when the scheduler runs
    scheduler.dispatch_due(enqueue=recorder, limit=10)

    # then it is not treated as a fresh first attempt
    assert [(ids, lane) for ids, _, lane in recorder.calls] == [([replayed.pk], Lane.RETRY)]


def test_the_limit_is_respected_oldest_due_first(make_due):
    # given five due deliveries
    now = timezone.now()
    due = [make_due(next_attempt_at=now - timedelta(seconds=50 - i)) for i in range(5)]

    # when the scheduler takes three, then the rest, then finds nothing
    reports, recorders = [], [Recorder(), Recorder(), Recorder()]
    for recorder in recorders:
        reports.append(scheduler.dispatch_due(enqueue=recorder, limit=3))

    # then the three oldest, then the other two, then nothing at all
    assert [r.dispatched for r in reports] == [3, 2, 0]
    assert recorders[0].ids == [d.pk for d in due[:3]]
    assert recorders[1].ids == [d.pk for d in due[3:]]
    assert recorders[2].calls == []


def test_a_limit_of_zero_dispatches_nothing(make_due):
    delivery = make_due()
    recorder = Recorder()

    report = scheduler.dispatch_due(enqueue=recorder, limit=0)

    assert (report.dispatched, recorder.calls) == (0, [])
    assert Delivery.objects.get(pk=delivery.pk).lease_token is None


def test_the_lag_counts_from_when_a_row_became_the_schedulers_not_from_its_due_time(make_due):
    # given a delivery due a minute ago that another holder kept until a second ago
    # (a batch waiting in its endpoint's line keeps its due time under a short lease)
    now = timezone.now()
    make_due(next_attempt_at=now - timedelta(seconds=60), lease_expires_at=now - timedelta(seconds=1))
    before = _lag_histogram()

    scheduler.dispatch_due(enqueue=Recorder(), limit=10)

    # then the lag observed is about a second, not a minute
    count, total = (after - earlier for after, earlier in zip(_lag_histogram(), before, strict=True))
    assert count == 1
    assert 1 <= total < 30


def _lag_histogram() -> tuple[float, float]:
    """(observations, sum of seconds) of the scheduler-lag histogram so far."""
    samples = {s.name: s.value for metric in metrics.SCHEDULER_LAG.collect() for s in metric.samples}
    return samples["hookpost_scheduler_lag_seconds_count"], samples["hookpost_scheduler_lag_seconds_sum"]


# --- After commit only -------------------------------------------------------------------


def test_nothing_is_enqueued_when_the_claiming_transaction_rolls_back(make_due):
    # given a due delivery
    delivery = make_due()
    recorder = Recorder()

    # when the scheduler runs inside a transaction that then rolls back
    with pytest.raises(RuntimeError, match="abort"), transaction.atomic():
        report = scheduler.dispatch_due(enqueue=recorder, limit=10)
        assert report.dispatched == 1
        raise RuntimeError("abort")

    # then nothing was enqueued and no lease was kept
    assert recorder.calls == []
    row = Delivery.objects.get(pk=delivery.pk)
    assert (row.lease_token, row.lease_expires_at) == (None, None)
    # and the delivery is still due: the next run hands it out
    scheduler.dispatch_due(enqueue=recorder, limit=10)
    assert recorder.ids == [delivery.pk]


def test_the_enqueue_runs_after_commit_when_the_lease_is_visible_to_workers(make_due):
    # given a due delivery, and an enqueue that looks at the row from another
    # connection (as a worker would) when it is called
    delivery = make_due()
    seen_by_worker: list[str | None] = []

    def enqueue(ids: list[int], token: str, lane: Lane) -> None:
        def look() -> None:
            seen_by_worker.append(Delivery.objects.get(pk=ids[0]).lease_token)

        assert _in_threads(look) == []
        recorder(ids, token, lane)

    recorder = Recorder()

    # when the scheduler runs inside an outer transaction
    with transaction.atomic():
        scheduler.dispatch_due(enqueue=enqueue, limit=10)
        # then nothing is enqueued while the transaction is open
        assert recorder.calls == []

    # and on commit it is, and a worker already sees the lease it will have to present
    [(ids, token, lane)] = recorder.calls
    assert (ids, lane) == ([delivery.pk], Lane.FIRST)
    assert seen_by_worker == [token]


# --- Celery queues in Redis --------------------------------------------------------------


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The test settings' real Redis broker, with the delivery queues emptied before and after,
    and each look at the retry queue's depth a fresh one (tests empty it between looks)."""
    monkeypatch.setattr(tasks, "_RETRY_DEPTH_MAX_AGE_SECONDS", 0.0)
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)

    def empty() -> None:
        for queue in (FIRST_QUEUE, RETRY_QUEUE):
            for key in client.scan_iter(match=f"{queue}*"):
                client.delete(key)

    empty()
    yield client
    empty()
    client.close()


def _queued(client: redis.Redis, queue: str) -> list[tuple[str, list[Any], str]]:
    """(task name, args, routing key) of each message waiting in ``queue``, oldest first."""
    out = []
    for raw in reversed(cast("list[bytes]", client.lrange(queue, 0, -1))):  # kombu LPUSHes and BRPOPs
        message = json.loads(raw)
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        out.append((message["headers"]["task"], args, message["properties"]["delivery_info"]["routing_key"]))
    return out


def _kwargs(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """The keyword arguments of each task waiting in ``queue``, oldest first."""
    return [
        json.loads(base64.b64decode(json.loads(raw)["body"]))[1]
        for raw in reversed(cast("list[bytes]", client.lrange(queue, 0, -1)))
    ]


def test_enqueue_puts_first_attempts_and_retries_on_their_own_queues(broker):
    # when first attempts and a retry are enqueued (endpoints given: 11 and 12 share one)
    tasks.enqueue([11, 12], "token-a", Lane.FIRST, {11: "ep_1", 12: "ep_1"})
    tasks.enqueue([13], "token-b", Lane.RETRY, {13: "ep_1"})

    # then each queue holds one batch task with its ids and lease token
    assert _queued(broker, FIRST_QUEUE) == [("hookpost.deliver_batch", [[11, 12], "token-a"], FIRST_QUEUE)]
    assert _queued(broker, RETRY_QUEUE) == [("hookpost.deliver_batch", [[13], "token-b"], RETRY_QUEUE)]
    # and the scheduler's view of the queue depths counts the tasks
    assert tasks.queue_depths() == {FIRST_QUEUE: 1, RETRY_QUEUE: 1}


def test_enqueue_batches_by_endpoint_up_to_the_batch_size(broker, settings):
    # given deliveries to two endpoints, interleaved, and batches of two
    settings.HOOKPOST_DELIVERY_BATCH_SIZE = 2
    endpoints = {1: "ep_7", 2: "ep_8", 3: "ep_7", 4: "ep_7", 5: "ep_8"}

    # when they are enqueued
    tasks.enqueue([1, 2, 3, 4, 5], "token", Lane.FIRST, endpoints)

    # then none is larger than two, and each endpoint's order is kept
    batches = [args[0] for _, args, _ in _queued(broker, FIRST_QUEUE)]
    assert batches == [[1, 3], [2, 5], [4]]
    # and each task of one endpoint names it, for a look at its places before any claim
    assert [kwargs["endpoint_uid"] for kwargs in _kwargs(broker, FIRST_QUEUE)] == ["ep_7", "ep_8", "ep_7"]


def test_enqueue_packs_what_is_left_of_each_endpoint_into_shared_tasks(broker, settings):
    # given five endpoints with one delivery each, and one with three, and batches of three
    settings.HOOKPOST_DELIVERY_BATCH_SIZE = 3
    endpoints = {1: "ep_1", 2: "ep_2", 3: "ep_3", 4: "ep_4", 5: "ep_5", 6: "ep_6", 7: "ep_6", 8: "ep_6"}

    tasks.enqueue(list(endpoints), "token", Lane.FIRST, endpoints)

    # then the busy endpoint has a task of its own, and the others share two tasks, not five
    batches = [args[0] for _, args, _ in _queued(broker, FIRST_QUEUE)]
    assert batches == [[6, 7, 8], [1, 2, 3], [4, 5]]
    # which name no endpoint: a worker claims them and admits each endpoint in turn
    assert [kwargs["endpoint_uid"] for kwargs in _kwargs(broker, FIRST_QUEUE)] == ["ep_6", None, None]


def test_enqueue_reads_the_endpoints_when_not_given(broker, make_due, settings):
    settings.HOOKPOST_DELIVERY_BATCH_SIZE = 10
    due = [make_due() for _ in range(3)]
    tasks.enqueue([d.pk for d in due], "token", Lane.FIRST)
    by_endpoint: dict[int, list[int]] = {}
    for d in due:
        by_endpoint.setdefault(d.endpoint_id, []).append(d.pk)
    assert sorted(args[0] for _, args, _ in _queued(broker, FIRST_QUEUE)) == sorted(by_endpoint.values())
    assert [kwargs["endpoint_uid"] for kwargs in _kwargs(broker, FIRST_QUEUE)] == [due[0].endpoint.uid]


def test_work_sent_on_from_an_endpoints_line_names_its_endpoint(broker, make_due):
    # the line hands its deliveries to workers through enqueue_fresh (dispatch.enqueue_now)
    delivery = make_due()
    tasks.enqueue_fresh([delivery.pk], "line-token")
    assert _kwargs(broker, FIRST_QUEUE) == [{"endpoint_uid": delivery.endpoint.uid}]


def test_hand_offs_look_at_the_retry_queues_depth_at_most_twice_a_second(broker, monkeypatch):
    # given a process that looked at the retry queue's depth a moment ago
    monkeypatch.setattr(tasks, "_RETRY_DEPTH_MAX_AGE_SECONDS", 0.5)
    monkeypatch.setattr(tasks, "_retry_depth", (0, float("-inf")))
    looks: list[tuple[str, ...]] = []
    read = tasks._read_queue_depths

    def counted(names: tuple[str, ...]) -> dict[str, int]:
        looks.append(names)
        return read(names)

    monkeypatch.setattr(tasks, "_read_queue_depths", counted)
    endpoint = EndpointFactory.create()  # never yet successful: its work takes the retry lane
    first, second = (
        DeliveryFactory.create(endpoint=endpoint, next_attempt_at=timezone.now()) for _ in range(2)
    )

    # when two hand-offs of retry-lane work follow each other
    tasks.enqueue_fresh([first.pk], None)
    tasks.enqueue_fresh([second.pk], None)

    # then the broker was asked once, and both were queued
    assert looks == [(RETRY_QUEUE,)]
    assert [args[0] for _, args, _ in _queued(broker, RETRY_QUEUE)] == [[first.pk], [second.pk]]


def test_queue_depths_are_zero_for_empty_queues(broker):
    assert tasks.queue_depths() == {FIRST_QUEUE: 0, RETRY_QUEUE: 0}


@pytest.mark.parametrize("lane", [Lane.FIRST, Lane.RETRY], ids=["only_first_attempts", "only_retries"])
def test_queue_depths_count_one_queue_while_the_other_is_empty(broker, lane, settings):
    # given tasks waiting in one delivery queue only (in Redis an empty queue does not exist)
    settings.HOOKPOST_DELIVERY_BATCH_SIZE = 1
    tasks.enqueue([21, 22, 23], "token", lane, {21: "ep_1", 22: "ep_2", 23: "ep_3"})
    assert broker.llen(lane.queue) == 3

    # then the scheduler's view of the queue depths still counts them
    full, empty = (FIRST_QUEUE, RETRY_QUEUE) if lane is Lane.FIRST else (RETRY_QUEUE, FIRST_QUEUE)
    assert tasks.queue_depths() == {full: 3, empty: 0}


def test_the_scheduler_tick_tops_each_queue_up_to_the_target_depth(broker, make_due, settings):
    # given three retries and, due later, three first attempts, and a target depth of 2 per queue
    now = timezone.now()
    failed = Delivery.Status.FAILED
    retries = [
        make_due(status=failed, attempt_count=1, next_attempt_at=now - timedelta(seconds=60 - i))
        for i in range(3)
    ]
    fresh = [make_due(next_attempt_at=now - timedelta(seconds=50 - i)) for i in range(3)]
    settings.HOOKPOST_QUEUE_TARGET_DEPTH = 2
    settings.HOOKPOST_SCHEDULER_BATCH = 10
    settings.HOOKPOST_DELIVERY_BATCH_SIZE = 1  # one delivery per task, so depth counts deliveries

    # when the scheduler tick runs
    tasks.dispatch_due()

    # then each queue holds its two oldest, each task with the lease token now on its row
    leases = dict(Delivery.objects.values_list("pk", "lease_token"))
    assert _queued(broker, RETRY_QUEUE) == [
        ("hookpost.deliver_batch", [[d.pk], leases[d.pk]], RETRY_QUEUE) for d in retries[:2]
    ]
    assert _queued(broker, FIRST_QUEUE) == [
        ("hookpost.deliver_batch", [[d.pk], leases[d.pk]], FIRST_QUEUE) for d in fresh[:2]
    ]
    assert leases[retries[2].pk] is None and leases[fresh[2].pk] is None

    # and while the queues are full a further tick queues nothing more
    tasks.dispatch_due()
    assert tasks.queue_depths() == {FIRST_QUEUE: 2, RETRY_QUEUE: 2}

    # and once a worker took a first attempt, the next tick queues the last first attempt,
    # although the last retry has been due longer: the full retry queue holds back no other lane
    broker.rpop(FIRST_QUEUE)
    tasks.dispatch_due()
    assert [args[0] for _, args, _ in _queued(broker, FIRST_QUEUE)] == [[fresh[1].pk], [fresh[2].pk]]
    assert tasks.queue_depths() == {FIRST_QUEUE: 2, RETRY_QUEUE: 2}
    assert Delivery.objects.get(pk=retries[2].pk).lease_token is None


def test_fresh_retry_lane_work_finding_the_retry_queue_full_is_left_to_the_scheduler(
    broker, make_due, settings
):
    # given a retry queue at its target depth, and a fresh delivery to an endpoint never yet
    # successful (retry lane) beside one to a proven endpoint (first lane), both under the
    # dispatch lease ingest wrote
    settings.HOOKPOST_QUEUE_TARGET_DEPTH = 2
    settings.HOOKPOST_DELIVERY_BATCH_SIZE = 1
    tasks.enqueue([91, 92], "older", Lane.RETRY, {91: "ep_a", 92: "ep_b"})
    proven = make_due()
    unproven = DeliveryFactory.create(endpoint=EndpointFactory.create(), next_attempt_at=timezone.now())
    token = "ingest-token"
    lease_end = timezone.now() + timedelta(seconds=120)
    Delivery.objects.filter(pk__in=[proven.pk, unproven.pk]).update(
        lease_token=token, lease_expires_at=lease_end
    )

    # when ingest hands them off
    tasks.enqueue_fresh([proven.pk, unproven.pk], token)

    # then the first attempt is queued, the retry queue grows no further, and the retry-lane
    # delivery is due and unleased: the scheduler's to hand out when the queue has room
    assert [args[0] for _, args, _ in _queued(broker, FIRST_QUEUE)] == [[proven.pk]]
    assert tasks.queue_depths()[RETRY_QUEUE] == 2
    row = Delivery.objects.get(pk=unproven.pk)
    assert (row.lease_token, row.lease_expires_at) == (None, None)
    assert row in scheduler.due_deliveries()

    # and once the queue has room, the scheduler's tick queues it
    broker.delete(RETRY_QUEUE)
    tasks.dispatch_due()
    assert [args[0] for _, args, _ in _queued(broker, RETRY_QUEUE)] == [[unproven.pk]]


def test_ingest_hands_each_delivery_over_with_its_lane_none_read_back_nor_rewritten(
    broker, settings, monkeypatch
):
    # given a retry queue at its target depth, and a tenant with a proven endpoint (first
    # lane) and one never yet successful (retry lane)
    settings.HOOKPOST_QUEUE_TARGET_DEPTH = 2
    tasks.enqueue([91, 92], "older", Lane.RETRY, {91: "ep_a", 92: "ep_b"})
    tenant = TenantFactory.create()
    event_type = EventTypeFactory.create()
    proven = EndpointFactory.create(tenant=tenant, last_success_at=timezone.now())
    unproven = EndpointFactory.create(tenant=tenant)
    batch = [NewMessage(event_type=event_type.name, payload={"n": n}) for n in range(2)]
    handed: list[tuple[list[int], str | None, Any]] = []
    touched: list[str] = []
    enqueue_fresh = tasks.enqueue_fresh

    def spy(ids: list[int], token: str | None, routes: Any = None) -> None:
        handed.append((ids, token, routes))
        with CaptureQueriesContext(connection) as queries:
            enqueue_fresh(ids, token, routes)
        table = f'"{Delivery._meta.db_table}"'
        touched.extend(q["sql"] for q in queries if table in q["sql"])

    monkeypatch.setattr(tasks, "enqueue_fresh", spy)

    # when two messages are published
    message_publish_batch(tenant=tenant, batch=batch)

    # then each lane's deliveries were handed over with the lane ingest chose as it wrote
    # them: the first lane's under the dispatch lease they were written with, the retry
    # lane's unleased
    first = list(Delivery.objects.filter(endpoint=proven).order_by("pk"))
    later = list(Delivery.objects.filter(endpoint=unproven).order_by("pk"))
    assert len(first) == len(later) == 2
    (token,) = {d.lease_token for d in first}
    assert token
    assert handed == [
        ([d.pk for d in first], token, {d.pk: dispatch.Route(proven.uid, Lane.FIRST) for d in first}),
        ([d.pk for d in later], None, {d.pk: dispatch.Route(unproven.uid, Lane.RETRY) for d in later}),
    ]
    # and the hand-off neither read a delivery back to route it nor wrote one
    assert touched == []
    # and the proven endpoint's deliveries are queued as one first-lane batch
    assert [args[0] for _, args, _ in _queued(broker, FIRST_QUEUE)] == [[d.pk for d in first]]
    # and the unproven endpoint's, finding the retry queue full, are due and unleased for
    # the scheduler: the retry queue grows no further
    assert all(d.lease_token is None and d.lease_expires_at is None for d in later)
    assert all(d in scheduler.due_deliveries() for d in later)
    assert tasks.queue_depths()[RETRY_QUEUE] == 2

    # when the retry queue has room, fresh retry-lane work is queued at once, with no token
    broker.delete(RETRY_QUEUE)
    (one,) = message_publish_batch(tenant=tenant, batch=batch[:1])
    fresh = Delivery.objects.get(endpoint=unproven, message=one.message)
    assert _queued(broker, RETRY_QUEUE) == [("hookpost.deliver_batch", [[fresh.pk], None], RETRY_QUEUE)]
    assert handed[-1] == ([fresh.pk], None, {fresh.pk: dispatch.Route(unproven.uid, Lane.RETRY)})


def test_unleased_work_is_claimed_once_whether_the_hand_off_or_the_scheduler_comes_first(make_due):
    # given two due deliveries written unleased, as ingest writes the retry lane's work
    taken_by_scheduler, taken_by_hand_off = make_due(), make_due()

    # when the scheduler hands the older out before the hand-off's task (no token) runs
    recorder = Recorder()
    scheduler.dispatch_due(enqueue=recorder, limit=1)
    [(ids, token, _)] = recorder.calls
    assert ids == [taken_by_scheduler.pk]

    # then the hand-off's task claims nothing, and the scheduler's task claims it
    assert leases.deliveries_claim(delivery_ids=ids, token=None)[0] == []
    assert [d.pk for d in leases.deliveries_claim(delivery_ids=ids, token=token)[0]] == ids

    # and when the hand-off's task claims the other first, the scheduler hands it out no more
    claimed, _ = leases.deliveries_claim(delivery_ids=[taken_by_hand_off.pk], token=None)
    assert [d.pk for d in claimed] == [taken_by_hand_off.pk]
    assert scheduler.dispatch_due(enqueue=Recorder(), limit=10).dispatched == 0


def test_ids_the_routes_miss_are_read_back(broker, make_due):
    routed, unrouted = make_due(), make_due()
    tasks.enqueue_fresh(
        [routed.pk, unrouted.pk], "token", {routed.pk: dispatch.Route(routed.endpoint.uid, Lane.FIRST)}
    )
    # (both are the same proven endpoint's: one first-lane batch, its endpoint read back for one)
    assert [args[0] for _, args, _ in _queued(broker, FIRST_QUEUE)] == [[routed.pk, unrouted.pk]]
    assert _kwargs(broker, FIRST_QUEUE) == [{"endpoint_uid": routed.endpoint.uid}]


def test_a_lane_the_broker_refuses_is_given_back_to_the_next_tick_and_the_other_lane_still_goes(make_due):
    from kombu.exceptions import OperationalError

    # given a first attempt and a retry due, and a broker that refuses the first lane's publish
    fresh = make_due()
    retry = make_due(status=Delivery.Status.FAILED, attempt_count=1)
    recorder = Recorder()

    def enqueue(ids: list[int], token: str, lane: Lane) -> None:
        if lane is Lane.FIRST:
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        recorder(ids, token, lane)

    # when the scheduler runs
    with transaction.atomic():
        scheduler.dispatch_due(enqueue=enqueue, limit=10)

    # then the retry lane was handed out, and the refused first attempt is unleased and due again
    assert recorder.ids == [retry.pk]
    assert _lease_of([fresh.pk]) == {None}
    assert _lease_of([retry.pk]) != {None}
    again = Recorder()
    scheduler.dispatch_due(enqueue=again, limit=10)
    assert again.ids == [fresh.pk]
