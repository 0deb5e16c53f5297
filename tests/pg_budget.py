"""The suite's budget of PostgreSQL connections: sampled all along, checked at the end.

The server (``max_connections`` 100) is shared with everything else on the machine,
so the suite keeps to ``BUDGET`` backends on its own databases, the workers and
servers it starts included. A thread counts them in ``pg_stat_activity`` every
``SAMPLE_SECONDS`` (from a connection of its own, on another database); the
terminal summary reports the peak, and a run whose peak went over the budget fails.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
import pytest
from django.conf import settings

BUDGET = 40
SAMPLE_SECONDS = 0.2


@dataclass
class Peak:
    connections: int = 0
    at: str = ""
    by_database: str = ""
    running: tuple[str, ...] = ()


class ConnectionSampler(threading.Thread):
    """Samples the backends on ``patterns`` (LIKE) until stopped; keeps the peak."""

    def __init__(self, conninfo: Mapping[str, object], patterns: list[str]) -> None:
        super().__init__(name="pg-connection-budget", daemon=True)
        self.conninfo = conninfo
        self.patterns = patterns
        self.peak = Peak()
        self.stopped = threading.Event()
        # The tests running now (under xdist, in every worker), to name the peak's.
        self.running: set[str] = set()

    def run(self) -> None:
        try:
            with psycopg.connect(**self.conninfo, autocommit=True) as conn:  # type: ignore[arg-type]  # keywords of libpq
                while not self.stopped.wait(SAMPLE_SECONDS):
                    self._sample(conn)
        except psycopg.Error:
            return  # no server to count on: the tests that need one fail on their own

    def _sample(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        rows = conn.execute(
            "SELECT datname, count(*) FROM pg_stat_activity WHERE datname LIKE ANY(%s) GROUP BY datname",
            [self.patterns],
        ).fetchall()
        total = sum(int(str(count)) for _, count in rows)
        if total > self.peak.connections:
            by_database = ", ".join(f"{name} {count}" for name, count in rows)
            running = tuple(sorted(self.running))
            self.peak = Peak(total, time.strftime("%H:%M:%S"), by_database, running)


_sampler: ConnectionSampler | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _sampler
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the controller counts for every worker
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.postgresql":
        return
    name = str(database["NAME"]).removeprefix("test_")
    conninfo = {
        "host": database["HOST"] or "127.0.0.1",
        "port": database["PORT"] or 5432,
        "user": database["USER"],
        "password": database["PASSWORD"] or None,
        "dbname": "postgres",
        "application_name": "pytest-connection-budget",
    }
    # The suite's test database (with any worker suffix) and the bench smoke test's.
    _sampler = ConnectionSampler(conninfo, [f"test\\_{name}%", "%bench\\_smoke"])
    _sampler.start()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _sampler is None:
        return
    _sampler.stopped.set()
    _sampler.join(5)
    if _sampler.peak.connections > BUDGET and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_runtest_logstart(nodeid: str) -> None:
    if _sampler is not None:
        _sampler.running.add(nodeid)


def pytest_runtest_logfinish(nodeid: str) -> None:
    if _sampler is not None:
        _sampler.running.discard(nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _sampler is None:
        return
    peak = _sampler.peak
    line = f"peak PostgreSQL connections of the suite: {peak.connections} (budget {BUDGET})"
    if peak.at:
        line += f" at {peak.at}: {peak.by_database}"
    terminalreporter.write_line(line, red=peak.connections > BUDGET)
    for nodeid in peak.running:
        terminalreporter.write_line(f"  while running {nodeid}")
