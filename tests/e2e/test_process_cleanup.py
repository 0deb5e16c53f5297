"""Killing pytest mid-test leaves nothing running that a test started: not on SIGINT
(Ctrl-C), not on SIGTERM (a CI job cancelled), not on SIGKILL (an OOM kill, a
supervisor out of patience).

Each case runs an inner pytest on ``probe_starts_a_process_group_and_waits`` (a name
only the inner run collects, ``-o python_functions=probe_``), kills it once its
fixture has started a process group, and then looks in /proc for what is left."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import wait_until
from tests.e2e.processes import ROOT, process_group

pytestmark = pytest.mark.e2e

PROBE_REPORT = "HOOKPOST_CLEANUP_PROBE_REPORT"
# A leader and a child of its own in the group: the whole group must go, not just the leader.
SLEEPERS = "import subprocess, time; subprocess.Popen(['sleep', '600']); time.sleep(600)"


def _running() -> dict[int, int]:
    """Process group of every process that runs (zombies have exited: they are not counted)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, _, group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):  # gone meanwhile
            continue
        if state != "Z":
            found[int(entry.name)] = int(group)
    return found


def _left(pids: list[int], pgid: int) -> list[int]:
    """Those of ``pids``, and of group ``pgid``, that still run."""
    return [pid for pid, group in _running().items() if pid in pids or group == pgid]


def _children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


@pytest.fixture
def sleeping_group(tmp_path: Path) -> Iterator[int]:
    log = tmp_path / "sleepers.log"
    with process_group([sys.executable, "-c", SLEEPERS], cwd=tmp_path, env=os.environ, log=log) as proc:
        wait_until(lambda: len(_left([], proc.pid)) == 2, timeout=30, what="the sleepers to start")
        yield proc.pid
    # The teardown ran (and stopped the group itself), not only the watchdog.
    Path(f"{os.environ[PROBE_REPORT]}.torn-down").write_text("yes")


def probe_starts_a_process_group_and_waits(sleeping_group: int) -> None:
    Path(os.environ[PROBE_REPORT]).write_text(str(sleeping_group))
    time.sleep(600)  # the outer test kills this pytest meanwhile


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_killing_pytest_mid_test_stops_every_process_its_test_started(tmp_path: Path, sig: int) -> None:
    report = tmp_path / "pgid"
    inner = [
        sys.executable, "-m", "pytest", __file__, "-o", "python_functions=probe_",
        "-q", "--basetemp", str(tmp_path / "inner"),
    ]  # fmt: skip
    env = {**os.environ, PROBE_REPORT: str(report)}
    probe: int | None = None  # the probe's group, for the finally block
    started: list[int] = []
    try:
        with process_group(inner, cwd=ROOT, env=env, log=tmp_path / "inner.log") as runner:
            # Given an inner pytest whose test has started a process group
            def started_or_ended() -> bool:
                return runner.poll() is not None or bool(report.exists() and report.read_text())

            wait_until(started_or_ended, timeout=120, what="the probe to start")
            assert runner.poll() is None, (tmp_path / "inner.log").read_text()[-3000:]
            probe = pgid = int(report.read_text())
            started = _children(runner.pid)  # the group's leader, and whatever pytest keeps beside it
            assert pgid in started and len(_left([], pgid)) == 2

            # When the runner is killed mid-test, by a signal to its process group (as a
            # terminal's Ctrl-C or a CI runner's cancel sends it)
            os.killpg(runner.pid, sig)
            runner.wait(60)

        # Then nothing it started is left: the probe's group, and anything else of its children
        log = (tmp_path / "inner.log").read_text()[-2000:]
        wait_until(lambda: not _left(started, pgid), timeout=30, what=f"what pytest started to exit:\n{log}")
        # On SIGINT and SIGTERM the runner unwinds: its fixtures' teardowns stop their groups
        assert Path(f"{report}.torn-down").exists() == (sig != signal.SIGKILL), log
    finally:
        if probe is not None:  # a failure here must not leave the sleepers behind
            for pid in _left(started, probe):
                os.kill(pid, signal.SIGKILL)
