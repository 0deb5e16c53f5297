"""CPU time by group of processes over a stretch of a run, read from /proc: whose work a
figure paid for.

The isolation step meters each throughput run: on two cores, what a broken tenant
costs the healthy one is the CPU its work takes beside it, and this names the
taker (the retry worker, PostgreSQL, the broken tenant's publisher, the harness).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol

_TICKS = os.sysconf("SC_CLK_TCK")
# Process names (``comm``) of the servers every step shares, grouped under these names.
_SERVERS = {"postgres": "postgres", "redis-server": "redis", "nginx": "nginx"}

# pid -> (name, user + system CPU seconds of all its threads)
Readings = dict[int, tuple[str, float]]


class Members(Protocol):
    """What a group is made of: ``bench.env.Process``, whose ``pids`` include its descendants."""

    def pids(self) -> list[int]: ...


def cpu_seconds(proc: Path = Path("/proc")) -> Readings:
    """(name, user + system CPU seconds of all its threads) of every process now."""
    found = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # The name is in parentheses and may hold spaces or parentheses itself.
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        found[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / _TICKS)
    return found


def shares(start: Readings, end: Readings, owner: Mapping[int, str], wall: float) -> dict[str, float]:
    """Each group's CPU seconds between the two readings per second of ``wall``, largest first.

    A process is charged to ``owner[pid]``, else to its server's name, else to "other". One
    started in between counts whole (a connection's new backend); what one that ended in
    between did there is lost (a backend whose connection aged out).
    """
    found: dict[str, float] = {}
    for pid, (name, seconds) in end.items():
        before = start[pid][1] if pid in start else 0.0
        group = owner.get(pid) or _SERVERS.get(name, "other")
        found[group] = found.get(group, 0.0) + (seconds - before) / wall
    return dict(sorted(found.items(), key=lambda item: -item[1]))


class CpuMeter:
    """``with CpuMeter(groups) as meter:``; then ``meter.shares`` holds each group's CPU seconds
    per second of the block's wall time (1.0 = one core busy).

    ``groups`` names our own processes (with their descendants); the servers go under their
    names, this process under "harness", and everything else under "other". ``read`` and
    ``clock`` are where the readings and the wall time come from.
    """

    def __init__(
        self,
        groups: Mapping[str, Sequence[Members]],
        *,
        read: Callable[[], Readings] = cpu_seconds,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.groups = groups
        self.read = read
        self.clock = clock
        self.shares: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._began = self.clock()
        self._start = self.read()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        end = self.read()
        wall = max(self.clock() - self._began, 1e-6)
        owner = {pid: name for name, members in self.groups.items() for m in members for pid in m.pids()}
        owner[os.getpid()] = "harness"
        self.shares = shares(self._start, end, owner, wall)
