"""End-to-end fixtures: a real Celery worker (with its scheduler) in a
subprocess, real Redis, the test PostgreSQL database, and real HTTP receivers
on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings

from bench import process_groups
from tests.e2e.private_redis import PrivateRedis
from tests.e2e.receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]

# Short timings so faults resolve in seconds instead of minutes.
E2E_ENV = {
    "HOOKPOST_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
    "HOOKPOST_SCHEDULER_INTERVAL_SECONDS": "0.25",
    "HOOKPOST_DISPATCH_LEASE_SECONDS": "3",
    "HOOKPOST_LEASE_MARGIN_SECONDS": "2",
    "HOOKPOST_CONNECT_TIMEOUT_SECONDS": "2",
}


def _database_url() -> str:
    db = django_settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


ALL_QUEUES = "deliveries.first,deliveries.retry,maintenance"


class Worker:
    """``celery -A config worker -B`` as a child process, logging to a file.

    ``queues`` are the ones it consumes (``-Q``); ``beat`` False leaves out the
    embedded scheduler (``-B``), for tests that run several workers.
    """

    def __init__(
        self,
        tmp: Path,
        concurrency: int = 8,
        extra_env: dict[str, str] | None = None,
        queues: str = ALL_QUEUES,
        beat: bool = True,
        pool: str = "threads",
    ) -> None:
        self.tmp = tmp
        self.concurrency = concurrency
        self.extra_env = extra_env or {}
        self.queues = queues
        self.beat = beat
        self.pool = pool
        self.log = tmp / f"worker-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Worker:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": _database_url(),
            "REDIS_URL": django_settings.REDIS_URL,
            "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
            "CELERY_BEAT_SCHEDULE_FILENAME": str(self.tmp / "beat-schedule"),
            **E2E_ENV,
            **self.extra_env,
        }
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            *(["-B"] if self.beat else []),
            "--pool",
            self.pool,
            "--concurrency",
            str(self.concurrency),
            "-Q",
            self.queues,
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            f"e2e-{time.monotonic_ns()}@%h",
        ]
        with open(self.log, "wb") as out:
            self.proc = process_groups.start(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready." in self.log.read_bytes():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"worker did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-whatever, as on an OOM kill, and its embedded beat
        (-B) with it: the machine it ran on is gone too in the scenario we play."""
        assert self.proc is not None
        process_groups.stop(self.proc, signal.SIGKILL, grace=0)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM to the worker (a warm shutdown), SIGKILL to its group after ``timeout`` s;
        its exit status."""
        if self.proc is None:
            return None
        return process_groups.stop(self.proc, signal.SIGTERM, timeout, leader_only=True)


@pytest.fixture
def e2e_settings(settings):
    """The test process sees the same target allowlist as the worker."""
    settings.HOOKPOST_ALLOWED_TARGET_NETWORKS = ["127.0.0.0/8"]
    settings.HOOKPOST_DISPATCH_LEASE_SECONDS = 3
    return settings


@pytest.fixture(scope="session")
def broker() -> Iterator[redis.Redis]:
    """The Redis database the suite uses as broker, emptied before e2e tests."""
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, broker, tmp_path_factory) -> Iterator[Worker]:
    """One worker for a module of e2e tests."""
    proc = Worker(tmp_path_factory.mktemp("worker")).start()
    yield proc
    proc.stop()


@pytest.fixture
def make_worker(django_db_setup, broker, tmp_path) -> Iterator[Callable[..., Worker]]:
    """Start workers inside a test (fault tests); all are stopped afterwards."""
    started: list[Worker] = []

    def make(**kwargs: Any) -> Worker:
        proc = Worker(tmp_path, **kwargs).start()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


def _drop_broker_pools() -> None:
    """Make this process's Celery producers reconnect: the app reads ``CELERY_BROKER_URL``
    from the (overridden) Django settings, but keeps its pools of the old URL."""
    from config.celery import app

    app._pool = None  # type: ignore[attr-defined]  # Celery's private pools: no public reset
    app.amqp._producer_pool = None  # type: ignore[attr-defined]  # as above


@pytest.fixture
def private_redis(django_db_setup, settings, tmp_path) -> Iterator[PrivateRedis]:
    """A private redis-server (outage tests may shut it down) that this process and the
    workers started afterwards use as broker and shared state; stopped on every exit."""
    server = PrivateRedis(tmp_path).start()
    settings.REDIS_URL = settings.CELERY_BROKER_URL = server.url
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": server.url}
    }
    _drop_broker_pools()
    try:
        yield server
    finally:
        server.kill()
        _drop_broker_pools()  # the settings fixture restores the URL after this
