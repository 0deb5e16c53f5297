"""Child processes that never outlive the process that started them: the one way the
benchmark and the test suite start processes.

Every child leads a session and process group of its own (``start``), so that one
``killpg`` reaches what it starts in turn: Celery's embedded beat, gunicorn's and
nginx's workers. Who stops the group, for each way the starting process (the
"runner": pytest, ``python -m bench``) can end:

- it returns, fails, times out: ``stop`` in the caller's ``finally`` (or ``with``);
- SIGINT: Python raises KeyboardInterrupt, and the same ``finally`` blocks run;
- SIGTERM: ``exit_on_sigterm`` makes it raise ``Terminated`` (a KeyboardInterrupt,
  so pytest ends the session and tears its fixtures down), and again they run; a
  second SIGTERM ends the runner at once, as SIGKILL would (below);
- SIGKILL, or a hang in the cleanup itself: no code of the runner runs any more, so
  a watchdog does it. The first ``start`` in a process spawns a small Python process
  in a session of its own (no terminal signal nor group kill aimed at the runner
  reaches it) that reads "+pgid" / "-pgid" lines from a pipe whose only writer is
  the runner. The kernel closes the pipe however the runner dies; at end of file
  the watchdog sends SIGTERM to every group still registered, SIGKILL after
  ``WATCHDOG_GRACE`` seconds, and exits. A runner that stopped its groups itself
  leaves nothing registered, and its watchdog just exits.

Groups are registered once started and unregistered once stopped, so the watchdog
signals only groups whose ``stop`` has not run (a reused group id is possible only
for a group that died by itself and was never stopped). Not covered: a group started
in the moment between ``fork`` and its registration, and processes that leave their
group themselves (``setsid``; nothing we start does).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO

WATCHDOG_GRACE = 5.0

_WATCHDOG = f"""
import os, signal, sys, time
groups = set()
for line in sys.stdin:
    (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
for sig, grace in ((signal.SIGTERM, {WATCHDOG_GRACE}), (signal.SIGKILL, 0)):
    deadline = time.monotonic() + grace
    for pgid in list(groups):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            groups.discard(pgid)
    while groups and time.monotonic() < deadline:
        time.sleep(0.1)
        for pgid in list(groups):
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                groups.discard(pgid)
"""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwind as on Ctrl-C, running every ``finally`` on the way out."""


class _Watchdog:
    """This process's watchdog, and the groups registered with it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.groups: set[int] = set()
        self.proc: subprocess.Popen[bytes] | None = None
        self.owner = 0  # the pid that spawned ``proc``: a forked child needs its own

    def _send(self, line: str) -> None:
        for _ in range(2):
            if self.proc is None or self.owner != os.getpid() or self.proc.poll() is not None:
                self.proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _WATCHDOG],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                self.owner = os.getpid()
                line = "".join(f"+{pgid}\n" for pgid in self.groups)
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(line.encode())
                self.proc.stdin.flush()
                return
            except BrokenPipeError:  # someone killed it: start another, told every group
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        """At exit: end of file for the watchdog, which stops what is still registered."""
        if self.proc is not None and self.owner == os.getpid() and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(WATCHDOG_GRACE + 5)

    def _forget_the_parents(self) -> None:
        """In a forked child the groups and the watchdog are the parent's: its own start empty."""
        if self.owner and self.owner != os.getpid():
            self.groups = set()
            self.proc = None
            self.owner = 0

    def register(self, pgid: int) -> None:
        with self.lock:
            self._forget_the_parents()
            self.groups.add(pgid)
            self._send(f"+{pgid}\n")

    def unregister(self, pgid: int) -> None:
        with self.lock:
            self._forget_the_parents()
            if pgid in self.groups:
                self.groups.discard(pgid)
                self._send(f"-{pgid}\n")


_watchdog = _Watchdog()
atexit.register(_watchdog.close)


def watchdog_pid() -> int | None:
    """The pid of this process's watchdog, None before the first ``start``."""
    proc = _watchdog.proc
    return proc.pid if proc is not None and _watchdog.owner == os.getpid() else None


def start(
    cmd: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    stdout: int | IO[bytes] | None = None,
    stderr: int | IO[bytes] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` as the leader of a new session and process group, registered with
    this process's watchdog; stop it with ``stop``."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    try:
        _watchdog.register(proc.pid)
    except BaseException:  # Ctrl-C or SIGTERM before the watchdog knew it: stop it here
        signal_group(proc, signal.SIGKILL)
        raise
    return proc


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the process group ``proc`` leads; a group that is gone already is no error."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop(
    proc: subprocess.Popen[bytes],
    sig: int = signal.SIGTERM,
    grace: float = 10.0,
    *,
    leader_only: bool = False,
) -> int:
    """``sig`` to ``proc``'s group (or to ``proc`` alone), up to ``grace`` seconds for ``proc``
    to exit, then SIGKILL to whatever of the group is left. Returns ``proc``'s exit status.

    Safe to call again, and on a group that is gone already. A stop cut short (Ctrl-C
    meanwhile) leaves the group registered: the watchdog still stops it.
    """
    if proc.poll() is None:
        if leader_only:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        else:
            signal_group(proc, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    signal_group(proc, signal.SIGKILL)
    status = proc.wait(10)
    _watchdog.unregister(proc.pid)
    return status


def run(
    cmd: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(cmd, capture_output=True, text=True)`` in a group of its own, which
    is stopped on any exit; raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
    proc = start(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with proc:  # closes the pipes on the way out
        try:
            out, err = proc.communicate(None if input is None else input.encode(), timeout)
        finally:
            stop(proc, signal.SIGKILL, 0)
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    )


def exit_on_sigterm() -> None:
    """From now on, SIGTERM raises ``Terminated`` in the main thread; a second one (a cleanup
    that hangs, or swallowed the first) ends the process at once, and the watchdog stops
    what it started. Call from the main thread."""
    received = [False]

    def raise_terminated(signum: int, frame: FrameType | None) -> None:
        if received[0]:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        received[0] = True
        raise Terminated(f"signal {signum}")

    signal.signal(signal.SIGTERM, raise_terminated)
