"""bench.cpu: CPU time by process group, as the isolation step reports it.

The meter is tested on its accounting, fed known readings: never on the CPU share a
process happens to get from a loaded machine."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import CpuMeter, Readings, cpu_seconds
from bench.env import Process
from tests.e2e.helpers import wait_until

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int, comm: str, utime: int, stime: int) -> str:
    """A /proc/<pid>/stat line: fields 14 and 15 are user and system time, in clock ticks."""
    return f"{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 20 0 1 0 5 0 0\n"


def test_readings_are_user_plus_system_time_of_each_process(tmp_path: Path) -> None:
    # Given a /proc with two processes, one whose name holds spaces and parentheses
    for pid, comm, utime, stime in [(7, "postgres", 3 * _TICKS, _TICKS), (42, "a (b) c", _TICKS, 0)]:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(_stat(pid, comm, utime, stime))
    (tmp_path / "self").mkdir()  # not a process
    (tmp_path / "99").mkdir()  # gone between the listing and the read: no stat

    # Then each process is read by its name, in CPU seconds
    assert cpu_seconds(tmp_path) == {7: ("postgres", 4.0), 42: ("a (b) c", 1.0)}


@dataclass
class Members:
    listed: list[int]

    def pids(self) -> list[int]:
        return self.listed


def test_each_process_is_charged_to_its_group_per_second_of_the_block() -> None:
    harness = os.getpid()
    start: Readings = {
        10: ("python", 5.0),  # a worker
        11: ("python", 1.0),  # its child (Celery's beat), listed among the worker's pids
        20: ("python", 2.0),  # the other group's process, idle
        30: ("postgres", 7.0),
        31: ("postgres", 1.0),  # a backend that ends before the block does
        40: ("redis-server", 3.0),
        50: ("sshd", 0.5),
        harness: ("python", 9.0),
    }
    end: Readings = {
        10: ("python", 6.5),
        11: ("python", 1.5),
        20: ("python", 2.0),
        30: ("postgres", 7.5),
        32: ("postgres", 0.25),  # a backend that started inside the block counts whole
        40: ("redis-server", 3.5),
        50: ("sshd", 1.0),
        harness: ("python", 10.0),
    }
    readings = iter([start, end])
    clock = iter([100.0, 102.0])

    # When the meter reads the processes and the clock around a block of 2 seconds
    groups = {"workers": [Members([10, 11])], "idle": [Members([20])]}
    with CpuMeter(groups, read=lambda: next(readings), clock=lambda: next(clock)) as meter:
        pass

    # Then a group has its members' CPU seconds per wall second, the servers theirs by name,
    # this process is the harness, and the rest "other"
    assert meter.shares == {
        "workers": 1.0,  # (1.5 + 0.5) / 2
        "harness": 0.5,
        "postgres": 0.375,  # (0.5 + 0.25) / 2; the ended backend's part is lost
        "redis": 0.25,
        "other": 0.25,
        "idle": 0.0,
    }
    assert list(meter.shares) == sorted(meter.shares, key=lambda group: -meter.shares[group])


def test_a_group_owns_what_its_process_started(tmp_path: Path) -> None:
    # Given a process that started a child of its own
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    parent = Process("parent", [sys.executable, "-c", script], {}, tmp_path / "parent.log")
    try:
        (child,) = wait_until(lambda: parent.pids()[1:], timeout=30, what="the child to start")
        start: Readings = {parent.pid: ("python", 1.0), child: ("sleep", 0.0)}
        end: Readings = {parent.pid: ("python", 1.0), child: ("sleep", 2.0)}
        readings, clock = iter([start, end]), iter([0.0, 1.0])

        # When the meter charges CPU time to the child
        with CpuMeter({"parent": [parent]}, read=lambda: next(readings), clock=lambda: next(clock)) as meter:
            pass
    finally:
        parent.stop()

    # Then the parent's group pays for it
    assert meter.shares == {"parent": 2.0}
