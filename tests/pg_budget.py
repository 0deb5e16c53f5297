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
TESTS_REPORTED = 12


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
        # The tests running now (under xdist, in every worker), to name the peak's, and
        # the most connections seen while each test ran (its own and its neighbours').
        self.running: set[str] = set()
        self.test_peaks: dict[str, int] = {}
        self.lock = threading.Lock()
        self.samples = 0
        self.error = ""

    def test_started(self, nodeid: str) -> None:
        with self.lock:
            self.running.add(nodeid)

    def test_finished(self, nodeid: str) -> None:
        with self.lock:
            self.running.discard(nodeid)

    def run(self) -> None:
        try:
            with psycopg.connect(**self.conninfo, autocommit=True) as conn:  # type: ignore[arg-type]  # keywords of libpq
                while True:  # one sample at least, however short the run
                    self._sample(conn)
                    self.samples += 1
                    if self.stopped.wait(SAMPLE_SECONDS):
                        break
        except Exception as exc:  # reported, and the run fails: a dead sampler counts nothing
            self.error = f"{type(exc).__name__}: {exc}"

    def _sample(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        rows = conn.execute(
            "SELECT datname, count(*) FROM pg_stat_activity WHERE datname LIKE ANY(%s) GROUP BY datname",
            [self.patterns],
        ).fetchall()
        total = sum(int(str(count)) for _, count in rows)
        with self.lock:
            running = tuple(sorted(self.running))
            for nodeid in running:
                self.test_peaks[nodeid] = max(total, self.test_peaks.get(nodeid, 0))
        if total > self.peak.connections:
            by_database = ", ".join(f"{name} {count}" for name, count in rows)
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
    over = _sampler.peak.connections > BUDGET
    if (over or _sampler.error or not _sampler.samples) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_runtest_logstart(nodeid: str) -> None:
    if _sampler is not None:
        _sampler.test_started(nodeid)


def pytest_runtest_logfinish(nodeid: str) -> None:
    if _sampler is not None:
        _sampler.test_finished(nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _sampler is None:
        return
    if _sampler.error or not _sampler.samples:
        reason = _sampler.error or "no sample taken"
        terminalreporter.write_line(f"PostgreSQL connections of the suite not counted: {reason}", red=True)
        return
    peak = _sampler.peak
    line = f"peak PostgreSQL connections of the suite: {peak.connections} (budget {BUDGET})"
    if peak.at:
        line += f" at {peak.at}: {peak.by_database}"
    terminalreporter.write_line(line, red=peak.connections > BUDGET)
    for nodeid in peak.running:
        terminalreporter.write_line(f"  while running {nodeid}")
    busiest = sorted(
        ((nodeid, peak) for nodeid, peak in _sampler.test_peaks.items() if peak), key=lambda item: -item[1]
    )[:TESTS_REPORTED]
    if busiest:
        terminalreporter.write_line(f"most PostgreSQL connections while each ran (top {TESTS_REPORTED}):")
    for nodeid, connections in busiest:
        terminalreporter.write_line(f"  {connections:3d}  {nodeid}")
