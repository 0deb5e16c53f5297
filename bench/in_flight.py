"""The in-flight step: how many requests one worker process keeps open, and at what cost.

One worker process (the production command) delivers to ``endpoints`` (100 in
the full run) proven endpoints, each with ``CAP`` places, behind a receiver
that accepts every request and never answers (bench/receivers.py ``Hanging``).
Once the requests stop growing, it reads:

- the requests open: TCP connections established from the worker to the
  receiver (``/proc/<pid>/net/tcp``, the worker's own view);
- the PostgreSQL connections the worker holds (``pg_stat_activity``, by the
  ``application_name`` the worker's environment sets);
- the worker's resident memory (process and children).

Issue 18's targets: ≥ 1,000 requests in flight in one process, ≤ 10 database
connections, RSS ≤ 300 MB.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench import hookpost
from bench.env import BenchEnv, Process, flush_redis, worker_command
from bench.receivers import Hanging

CAP = 10
MESSAGES = 12  # per endpoint: more than its cap, so every place stays taken
APPLICATION_NAME = "bench-in-flight"


def _established_to(port: int, pids: list[int]) -> int:
    """TCP connections in state ESTABLISHED to ``port`` on 127.0.0.1 owned by ``pids``."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = fd.readlink().as_posix()
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    wanted = f"{port:04X}"
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and remote.endswith(":" + wanted) and inode in inodes:
                count += 1
    return count


def _backends() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APPLICATION_NAME]
        )
        return int(cursor.fetchone()[0])


def measure(
    env: BenchEnv, hanging: Hanging, *, endpoints: int, settle_seconds: float = 60.0
) -> dict[str, Any]:
    """Fill one worker with requests that never end; the figures of the fullest moment."""
    from django.utils import timezone

    from webhooks.models import Endpoint

    hookpost.clear_history()
    urls = [hanging.url(f"/hang/in-flight/{i}") for i in range(endpoints)]
    tenant = hookpost.make_tenant("bench-in-flight", urls, timeout_seconds=30)
    Endpoint.objects.filter(tenant=tenant.model).update(last_success_at=timezone.now(), max_in_flight=CAP)
    flush_redis(env)
    # No embedded scheduler: publishing hands the work over, and the figures are the
    # worker process's alone.
    command = worker_command(
        sys.executable, "config", "deliveries.first,deliveries.retry,maintenance", "in-flight"
    )
    worker = Process(
        "hookpost-worker-in-flight",
        command,
        {**env.hookpost_env(), "PGAPPNAME": APPLICATION_NAME},
        env.workdir / "worker-in-flight.log",
    )
    best: dict[str, Any] = {"requests_in_flight": 0}
    try:
        hookpost.publish(tenant, endpoints * MESSAGES, tag="in-flight")
        began = time.monotonic()
        while time.monotonic() - began < settle_seconds:
            time.sleep(2)
            pids = worker.pids()
            sample = {
                "requests_in_flight": _established_to(hanging.port, pids),
                "db_connections": _backends(),
                "rss_kb": worker.rss_kb(),
                "at_seconds": round(time.monotonic() - began, 1),
            }
            if sample["requests_in_flight"] > best["requests_in_flight"]:
                best = sample
            if best["requests_in_flight"] >= endpoints * CAP and sample["at_seconds"] > 10:
                break
    finally:
        worker.stop()
        hookpost.clear_history()
    return {**best, "endpoints": endpoints, "cap": CAP}
