"""A worker serving only the retry lane runs below the first lane's CPU priority, every
thread of it (config/worker_priority.py), so on shared cores a broken tenant's retries
take what healthy first attempts leave."""

from __future__ import annotations

import os
from pathlib import Path

from config.celery import FIRST_QUEUE, MAINTENANCE_QUEUE, RETRY_QUEUE
from tests.e2e.conftest import Worker

FIRST_LANE = f"{FIRST_QUEUE},{MAINTENANCE_QUEUE}"
RETRY_LANE = f"{RETRY_QUEUE},{MAINTENANCE_QUEUE}"


def _niceness_of_threads(pid: int) -> set[int]:
    """The nice value of every thread of ``pid`` (field 19 of /proc/<pid>/task/<tid>/stat)."""
    values = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        values.add(int(fields[16]))
    return values


def test_a_retry_lane_worker_lowers_its_priority_and_a_first_lane_worker_does_not(make_worker):
    base = os.nice(0)
    retry = make_worker(queues=RETRY_LANE, concurrency=2, beat=False)
    first = make_worker(queues=FIRST_LANE, concurrency=2, beat=False)
    both = make_worker(queues=f"{FIRST_LANE},{RETRY_QUEUE}", concurrency=2, beat=False)
    level = make_worker(
        queues=RETRY_LANE, concurrency=2, beat=False, extra_env={"HOOKPOST_RETRY_WORKER_NICENESS": "0"}
    )

    assert _niceness_of_threads(_pid(retry)) == {min(base + 10, 19)}
    assert _niceness_of_threads(_pid(first)) == {base}
    assert _niceness_of_threads(_pid(both)) == {base}
    assert _niceness_of_threads(_pid(level)) == {base}


def _pid(worker: Worker) -> int:
    assert worker.proc is not None
    return worker.proc.pid
