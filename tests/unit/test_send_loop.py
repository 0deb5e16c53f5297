"""The send loop's room: a task waits before claiming while the process has its
requests in flight, or its batches waiting for a recorder (deliveries.send_loop)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from deliveries import send_loop


async def _sent() -> None:
    return None


def _has_room(timeout: float = 0.3) -> bool:
    """Whether ``wait_for_room`` returns within ``timeout`` s (it is waited for in a thread)."""
    returned = threading.Event()

    def wait() -> None:
        send_loop.wait_for_room()
        returned.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    return returned.wait(timeout)


@pytest.fixture
def recorders_held() -> Iterator[threading.Event]:
    """Finishes that wait until the event is set (recorders busy elsewhere); set on exit."""
    go = threading.Event()
    yield go
    go.set()
    assert send_loop.drain(10)


def test_batches_waiting_for_a_recorder_keep_a_task_from_claiming(settings, recorders_held):
    # given room for many requests, but for only three batches waiting to be recorded
    settings.HOOKPOST_WORKER_MAX_IN_FLIGHT = 1000
    settings.HOOKPOST_WORKER_MAX_UNRECORDED = 3
    settings.HOOKPOST_RECORDER_THREADS = 4
    finished: list[int] = []
    recording = threading.Semaphore(0)

    def finish(_: None) -> None:
        recording.release()
        recorders_held.wait(10)
        finished.append(1)

    # when three batches have sent everything and are still being recorded
    for _ in range(3):
        send_loop.start_batch(_sent(), reserve=1, finish=finish)
    assert all(recording.acquire(timeout=5) for _ in range(3))

    # then a task waits before claiming more, although few requests are in flight
    assert not _has_room()
    # and once the recorders catch up, it goes on
    recorders_held.set()
    assert _has_room(5)
    assert send_loop.drain(5) and len(finished) == 3


def test_requests_reserved_keep_a_task_from_claiming(settings, recorders_held):
    settings.HOOKPOST_WORKER_MAX_IN_FLIGHT = 10
    settings.HOOKPOST_WORKER_MAX_UNRECORDED = 100
    send_loop.start_batch(_sent(), reserve=10, finish=lambda _: recorders_held.wait(10))

    assert not _has_room()
    recorders_held.set()
    assert _has_room(5)
