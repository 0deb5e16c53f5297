"""The Celery app: ``celery -A config worker`` and ``celery -A config beat``.

Queues:
- ``deliveries.first``  first attempts (fresh messages; latency matters);
- ``deliveries.retry``  later attempts, so a failing receiver's retries never
  queue in front of fresh messages for healthy ones;
- ``maintenance``       the scheduler tick and housekeeping; every worker
  consumes it too, so the ticks never depend on one worker staying up.

Tasks take ids only; PostgreSQL holds the truth.
"""

from __future__ import annotations

import os
import socket
import warnings
from datetime import timedelta

from celery import Celery, bootsteps
from celery.exceptions import CPendingDeprecationWarning
from celery.signals import task_postrun
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("hookpost")
app.config_from_object("django.conf:settings", namespace="CELERY")

FIRST_QUEUE = "deliveries.first"
RETRY_QUEUE = "deliveries.retry"
MAINTENANCE_QUEUE = "maintenance"

app.conf.task_queues = (Queue(FIRST_QUEUE), Queue(RETRY_QUEUE), Queue(MAINTENANCE_QUEUE))
app.conf.task_routes = {
    "hookpost.dispatch_due": {"queue": MAINTENANCE_QUEUE},
    "hookpost.purge_expired": {"queue": MAINTENANCE_QUEUE},
}


def _scheduler_interval() -> float:
    from django.conf import settings

    return float(settings.HOOKPOST_SCHEDULER_INTERVAL_SECONDS)


@app.on_after_finalize.connect
def _setup_beat(sender: Celery, **kwargs: object) -> None:
    interval = _scheduler_interval()
    sender.conf.beat_schedule = {
        "dispatch-due-deliveries": {
            "task": "hookpost.dispatch_due",
            "schedule": timedelta(seconds=interval),
            # A tick nobody ran in time is worthless; the next one covers it.
            "options": {"queue": MAINTENANCE_QUEUE, "expires": max(interval * 5, 5)},
        },
        "purge-expired-history": {
            "task": "hookpost.purge_expired",
            "schedule": timedelta(hours=1),
            "options": {"queue": MAINTENANCE_QUEUE, "expires": 3600},
        },
    }


class _WakeEventLoop(bootsteps.StartStopStep):
    """Wake the worker's event loop as soon as a pool thread finishes a task.

    With the threads pool, late acks and prefetch 1 on Redis (our setup), a
    task finishing in a pool thread does not wake the event loop: once every
    prefetch slot was taken, the worker stops fetching until the loop's next
    timer (kombu's is 10 s), so a burst of deliveries stalls per ``concurrency``
    tasks (celery/celery#6941). Delivery tasks return in milliseconds (the
    sends go on in the background), so even a 50 ms tick capped a process at
    about 80 tasks a second. A socket pair registered with the loop is
    written to after every task (``task_postrun``, in the pool thread), which
    wakes the loop at once; the Redis transport then fetches again. A tick
    every ``WAKE_SECONDS`` stays as the fallback.
    """

    requires = ("celery.worker.components:Hub",)
    WAKE_SECONDS = 0.05

    def start(self, worker: object) -> None:
        hub = getattr(worker, "hub", None)
        if hub is None:
            return
        hub.call_repeatedly(self.WAKE_SECONDS, _noop)
        readable, writable = socket.socketpair()
        readable.setblocking(False)
        writable.setblocking(False)
        hub.add_reader(readable, _drain, readable)
        _wakers.append(writable)


_wakers: list[socket.socket] = []


def _noop() -> None:
    pass


def _drain(readable: socket.socket) -> None:
    try:
        while readable.recv(4096):
            pass
    except BlockingIOError:
        pass


@task_postrun.connect
def _wake_after_task(**kwargs: object) -> None:
    for writable in _wakers:
        try:
            writable.send(b"\0")
        except (BlockingIOError, OSError):  # full: the loop has a wake-up pending anyway
            pass


app.steps["worker"].add(_WakeEventLoop)

app.autodiscover_tasks(["deliveries"])

# Request ids travel from the API into tasks (signal handlers register on import).
from celery.signals import (  # noqa: E402
    celeryd_after_setup,
    worker_init,
    worker_process_shutdown,
    worker_shutdown,
)

import config.log_context  # noqa: E402,F401


@celeryd_after_setup.connect
def _quiet_the_cancel_on_connection_loss_warning(**kwargs: object) -> None:
    """Tasks in flight are not cancelled on a lost broker connection, on purpose
    (``CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS`` in config/settings.py),
    yet Celery warns about that setting's future default on every reconnection. Its
    logging setup turns its own warnings to "always", so this filter goes in after it."""
    warnings.filterwarnings(
        "ignore",
        message=r"\s*In Celery 5\.1 we introduced an optional breaking change",
        category=CPendingDeprecationWarning,
    )


@celeryd_after_setup.connect
def _lower_the_retry_lanes_priority(instance: object = None, **kwargs: object) -> None:
    """Before the pool starts, so every thread it starts inherits the priority."""
    from django.conf import settings

    from config.worker_priority import lower_for_retry_only

    queues = getattr(getattr(getattr(instance, "app", app), "amqp", None), "queues", None)
    consumed = set(queues.consume_from or queues) if queues is not None else set()
    lower_for_retry_only(
        consumed,
        first_queue=FIRST_QUEUE,
        retry_queue=RETRY_QUEUE,
        niceness=settings.HOOKPOST_RETRY_WORKER_NICENESS,
    )


@worker_init.connect
def _worker_metrics(sender: object = None, **kwargs: object) -> None:
    from django.conf import settings

    from config.metrics import start_worker_metrics_server

    pool_cls = getattr(sender, "pool_cls", None)  # a name or a class at this point
    pool = pool_cls if isinstance(pool_cls, str) else str(getattr(pool_cls, "__module__", ""))
    if (
        pool.endswith("prefork")
        and settings.HOOKPOST_WORKER_METRICS_PORT
        and not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    ):
        # The children would count attempts where the metrics server cannot see them.
        raise SystemExit(
            "the prefork pool with HOOKPOST_WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR "
            "(an empty directory per worker); the default threads pool does not"
        )
    start_worker_metrics_server()


@worker_init.connect
def _size_bulkheads(**kwargs: object) -> None:
    """Size the slow-endpoint compartment (deliveries.bulkhead) from the requests one
    worker process keeps in flight (deliveries.send_loop)."""
    from django.conf import settings

    from deliveries import bulkhead

    bulkhead.configure_worker(settings.HOOKPOST_WORKER_MAX_IN_FLIGHT)


@worker_shutdown.connect
@worker_process_shutdown.connect
def _finish_batches_in_flight(**kwargs: object) -> None:
    """A warm stop waits for the batches this process started to be recorded: their tasks
    returned long ago, and a sent request left unrecorded would be sent again."""
    from django.conf import settings

    from deliveries import send_loop

    send_loop.drain(settings.HOOKPOST_MAX_TIMEOUT_SECONDS + settings.HOOKPOST_LEASE_MARGIN_SECONDS)
