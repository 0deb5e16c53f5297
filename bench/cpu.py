"""CPU time by group of processes over a stretch of a run, read from /proc: whose work a
figure paid for.

The isolation step meters each throughput run: on two cores, what a broken tenant
costs the healthy one is the CPU its work takes beside it, and this names the
taker (the retry worker, PostgreSQL, the broken tenant's publisher, the harness).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from bench.env import Process

_TICKS = os.sysconf("SC_CLK_TCK")
# Process names (``comm``) of the servers every step shares, grouped under these names.
_SERVERS = {"postgres": "postgres", "redis-server": "redis", "nginx": "nginx"}


def _cpu_seconds() -> dict[int, tuple[str, float]]:
    """(name, user + system CPU seconds of all its threads) of every process now."""
    found = {}
    for entry in Path("/proc").iterdir():
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


class CpuMeter:
    """``with CpuMeter(groups) as meter:``; then ``meter.shares`` holds each group's CPU seconds
    per second of the block's wall time (1.0 = one core busy).

    ``groups`` names our own processes (with their descendants); the servers go under their
    names, this process under "harness", and everything else under "other".
    """

    def __init__(self, groups: Mapping[str, Sequence[Process]]) -> None:
        self.groups = groups
        self.shares: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._began = time.monotonic()
        self._start = _cpu_seconds()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        end = _cpu_seconds()
        wall = max(time.monotonic() - self._began, 1e-6)
        owner = {pid: name for name, processes in self.groups.items() for p in processes for pid in p.pids()}
        owner[os.getpid()] = "harness"
        shares: dict[str, float] = {}
        for pid, (name, seconds) in end.items():
            # A process started inside the block counts whole (a connection's new backend); what
            # one that ended inside it did there is lost (a backend whose connection aged out).
            before = self._start[pid][1] if pid in self._start else 0.0
            group = owner.get(pid) or _SERVERS.get(name, "other")
            shares[group] = shares.get(group, 0.0) + (seconds - before) / wall
        self.shares = dict(sorted(shares.items(), key=lambda item: -item[1]))
