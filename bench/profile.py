"""``--profile``: sample Hookpost's first-lane workers with py-spy while the 1:1 runs go.

py-spy attaches from outside (no code change in the worker, a few percent of
overhead) and writes collapsed stacks; ``summary`` turns them into the share
of samples spent inside each of our functions and the libraries' entry
points, which is what docs/BENCHMARKS.md shows under "Profile".
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from bench import process_groups

# Frames that only mean "a thread is waiting for work", not work.
_IDLE = (
    "_worker (concurrent/futures/thread.py",
    "_worker (celery/concurrency/thread.py",
    "wait (threading.py",
)


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed (requirements-dev.txt)")
    return found


class Profiler:
    """``with Profiler(pids, raw_path):`` records the processes until the block ends.

    One py-spy per process; their collapsed stacks are joined in ``raw_path``
    at the end, so the profile covers every first-lane worker, whichever of
    them the batches went to.
    """

    def __init__(self, pids: list[int], raw: Path, rate: int = 100) -> None:
        self.raw = raw
        self.parts = [raw.with_name(f"{raw.name}.{pid}") for pid in pids]
        # --nonblocking: sample without pausing the worker, so the figures measured meanwhile hold.
        # --gil: only the thread holding the GIL, i.e. where the process spends its CPU. Without
        # it, the 16 pool threads queueing for the GIL after every socket call show up in that
        # call, and the network looks like half the cost when it is a quarter.
        record = [py_spy(), "record", "--format", "raw", "--rate", str(rate)]
        self.cmds = [
            [*record, "--output", str(part), "--pid", str(pid), "--subprocesses", "--nonblocking", "--gil"]
            for pid, part in zip(pids, self.parts, strict=True)
        ]
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Profiler:
        self.raw.parent.mkdir(parents=True, exist_ok=True)
        # py-spy's messages go to a file: a pipe nobody reads fills up over a long run, and
        # py-spy then blocks and never writes its samples.
        with self.raw.with_name(f"{self.raw.name}.log").open("ab") as log:
            self.procs = [
                process_groups.start(cmd, stdout=subprocess.DEVNULL, stderr=log) for cmd in self.cmds
            ]
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for proc in self.procs:
            process_groups.signal_group(proc, signal.SIGINT)  # py-spy writes its file on SIGINT
        for proc in self.procs:
            process_groups.stop(proc, signal.SIGINT, 30)
        with self.raw.open("w") as joined:
            for part in self.parts:
                if part.exists():
                    joined.write(part.read_text(errors="replace"))


_OURS = ("deliveries", "webhooks", "config")


def summary(raw: Path, top: int = 25) -> list[tuple[float, str]]:
    """(percent of busy samples, function) for the functions most often on the stack.

    Busy = samples whose innermost frame is not a pool thread waiting for a
    task. Counted: frames of Hookpost's own code (config/, deliveries/,
    webhooks/), the first library frame under each of them (where our code
    hands over: the ORM, urllib3, redis), and, as "outside our code", busy
    samples with no frame of ours at all (Celery consuming and acking tasks,
    beat, the broker connection).
    """
    inclusive: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")[1:]  # the first element names the process
        if not frames or any(marker in frames[-1] for marker in _IDLE):
            continue
        n = int(count)
        busy += n
        seen: set[str] = set()
        under_ours = False
        for frame in frames:
            path = frame.partition(" (")[2]
            if path.split("/", 1)[0] in _OURS:
                under_ours = True
            elif under_ours:
                under_ours = False  # the first library frame below ours is counted, then skip
            else:
                continue
            name = frame.rsplit(":", 1)[0] + ")"
            if name not in seen:
                seen.add(name)
                inclusive[name] += n
        if not seen:
            inclusive["(outside our code: Celery, kombu, beat)"] += n
    if not busy:
        return []
    return [(100 * n / busy, name) for name, n in inclusive.most_common(top)]
