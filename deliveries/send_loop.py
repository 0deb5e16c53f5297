"""The send loop: where a worker process's requests to receivers run, and where a
batch is finished once its requests are done.

- One asyncio event loop per process, on its own thread (started on first use,
  and again in a forked child). Every request is a coroutine on it
  (``deliveries.transport``), so a request in flight costs a socket and a
  little memory, not a thread.
- ``run``: run a coroutine there and wait for its result (the blocking form,
  for callers that want the outcome: tests, operator notices, ``engine.delivery_run_batch``).
- ``start_batch``: run a batch's sends there without waiting; when they are
  done, its finishing step (record the attempts, move the deliveries, free the
  places) runs on one of ``HOOKPOST_RECORDER_THREADS`` recorder threads. The
  Celery task that started the batch returns at once, so a pool thread never
  waits on a receiver, and the database connections a process holds are its
  Celery threads' and its recorders', however many requests are in flight.
- ``wait_for_room``: a task waits before it claims anything while the process
  has ``HOOKPOST_WORKER_MAX_IN_FLIGHT`` requests in flight or reserved, or
  ``HOOKPOST_WORKER_MAX_UNRECORDED`` batches sent and waiting for a recorder;
  with prefetch 1 the worker then stops fetching, and the work stays in
  PostgreSQL and the queue, unclaimed. The second bound keeps the recorders'
  queue short: a batch waiting there still holds its deliveries' lease, and
  one recorded after the lease has ended is not recorded at all (it is sent
  again), which is what a process sending faster than it records would do.
- ``drain``: at worker shutdown, wait for the batches started here to finish,
  so a warm stop never leaves a sent request unrecorded.

A batch started here and lost with its process (SIGKILL) is still leased in
PostgreSQL: the scheduler hands it out again when the lease ends, as for a
worker killed mid-request.

Why hand-written: Celery has no asyncio pool, and running the sends on a loop
beside the threads pool keeps claims and records synchronous Django code.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None
_recorders: ThreadPoolExecutor | None = None
_owner_pid = 0

_room = threading.Condition()
_reserved = 0  # requests the unfinished batches may have in flight
_batches = 0  # batches started and not yet finished
_unrecorded = 0  # batches whose sends are done, waiting for or in their finish


def _ensure_started() -> asyncio.AbstractEventLoop:
    global _loop, _loop_thread, _recorders, _owner_pid, _reserved, _batches, _unrecorded
    with _lock:
        if _loop is None or _owner_pid != os.getpid():
            # A forked child inherits the parent's objects but not its threads.
            _loop = asyncio.new_event_loop()
            _loop_thread = threading.Thread(target=_loop.run_forever, name="send-loop", daemon=True)
            _loop_thread.start()
            _recorders = ThreadPoolExecutor(
                max_workers=max(1, settings.HOOKPOST_RECORDER_THREADS), thread_name_prefix="recorder"
            )
            _owner_pid = os.getpid()
            with _room:
                _reserved = _batches = _unrecorded = 0
        return _loop


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on the send loop and wait for its result (not from the loop itself)."""
    loop = _ensure_started()
    if threading.current_thread() is _loop_thread:
        coroutine.close()
        raise RuntimeError("send_loop.run called on the send loop")
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result()


def start_batch(sends: Coroutine[Any, Any, T], *, reserve: int, finish: Callable[[T], object]) -> None:
    """Run ``sends`` on the send loop; then ``finish(its result)`` on a recorder thread.

    ``reserve``: how many requests the batch may have in flight at once (counted
    by ``wait_for_room`` until ``finish`` returns). ``sends`` must not raise;
    should ``finish`` raise, it is logged, and the batch's deliveries, still
    leased, go back to the scheduler when their lease ends.
    """
    global _reserved, _batches
    loop = _ensure_started()
    with _room:
        _reserved += reserve
        _batches += 1
    recorders = _recorders
    assert recorders is not None
    future = asyncio.run_coroutine_threadsafe(sends, loop)
    future.add_done_callback(lambda done: _to_recorder(recorders, done, finish, reserve))


def _to_recorder(
    recorders: ThreadPoolExecutor, done: Future[T], finish: Callable[[T], object], reserve: int
) -> None:
    global _unrecorded
    with _room:
        _unrecorded += 1
    try:
        recorders.submit(_finish, done, finish, reserve)
    except RuntimeError:  # the recorders are shut down with the interpreter
        logger.warning("no recorder for a batch; its deliveries return when their lease ends")
        _finished(reserve)


def _finish(done: Future[T], finish: Callable[[T], object], reserve: int) -> None:
    try:
        close_old_connections()
        finish(done.result())
    except Exception:
        logger.exception("could not finish a batch; its deliveries return when their lease ends")
    finally:
        try:
            close_old_connections()
        finally:
            _finished(reserve)


def _finished(reserve: int) -> None:
    global _reserved, _batches, _unrecorded
    with _room:
        _reserved -= reserve
        _batches -= 1
        _unrecorded -= 1
        _room.notify_all()


def wait_for_room() -> None:
    """Block while this process has ``HOOKPOST_WORKER_MAX_IN_FLIGHT`` requests reserved, or
    ``HOOKPOST_WORKER_MAX_UNRECORDED`` batches waiting to be recorded."""
    in_flight = max(1, settings.HOOKPOST_WORKER_MAX_IN_FLIGHT)
    unrecorded = max(1, settings.HOOKPOST_WORKER_MAX_UNRECORDED)
    with _room:
        _room.wait_for(lambda: _reserved < in_flight and _unrecorded < unrecorded)


def run_briefly(coroutine: Coroutine[Any, Any, object], timeout: float) -> None:
    """Run ``coroutine`` on the send loop if it runs, waiting at most ``timeout`` seconds."""
    loop = _loop
    if loop is None or not loop.is_running() or _owner_pid != os.getpid():
        coroutine.close()
        return
    try:
        asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)
    except Exception:
        logger.debug("could not finish %r in time", coroutine, exc_info=True)


def close_soon(closing: Coroutine[Any, Any, object]) -> None:
    """Run ``closing`` (a connection pool's close) on the send loop if it runs, without waiting."""
    loop = _loop
    if loop is None or loop.is_closed() or _owner_pid != os.getpid():
        closing.close()
        return
    try:
        asyncio.run_coroutine_threadsafe(closing, loop)
    except RuntimeError:  # the loop is shutting down with the interpreter
        closing.close()


def drain(timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for every batch started here to finish; True if they did."""
    with _room:
        finished = _room.wait_for(lambda: _batches == 0, timeout=max(timeout, 0))
    if not finished:
        logger.warning("%d batches still unfinished after %.0f s at shutdown", _batches, timeout)
    return finished
