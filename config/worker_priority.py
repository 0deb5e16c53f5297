"""A worker that serves only the retry lane runs at a lower CPU priority.

The lanes keep failing endpoints' work out of healthy first attempts' queue
(``deliveries.lanes``); on shared cores the retry worker still competes for
CPU, and a broken tenant keeps it busy without end (every delivery to a
failing endpoint is due again soon). At a lower priority it takes what the
first lane leaves: all of an idle machine, a small share of a busy one.

Hand-written because no library does it: ``os.nice`` lowers the process
(threads started later inherit it). On Linux with autogroup scheduling, each
session is scheduled as one group and a process's own nice value only ranks
it inside its session; a worker that leads its session (as supervisors start
them) lowers its group's as well (``/proc/self/autogroup``, sched(7)). Under
cgroups (systemd, containers) the supervisor's CPU weight is the knob:
docs/operations.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from pathlib import Path

logger = logging.getLogger(__name__)

_AUTOGROUP = Path("/proc/self/autogroup")


def lower_for_retry_only(
    queues: Collection[str], *, first_queue: str, retry_queue: str, niceness: int
) -> bool:
    """Lower this process's CPU priority by ``niceness`` when ``queues`` hold the retry
    lane and not the first; whether it did."""
    if niceness <= 0 or retry_queue not in queues or first_queue in queues:
        return False
    os.nice(niceness)
    if os.getsid(0) == os.getpid() and _AUTOGROUP.exists():
        try:
            _AUTOGROUP.write_text(str(min(niceness, 19)))
        except OSError:
            logger.warning("could not lower this worker's autogroup priority", exc_info=True)
    logger.info("retry-lane worker: CPU priority lowered by %d (HOOKPOST_RETRY_WORKER_NICENESS)", niceness)
    return True
