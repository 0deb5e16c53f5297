"""Processes the e2e tests start (servers, ``make run``): each in a process group of
its own, stopped whole on every exit of the test or of pytest itself
(bench/process_groups.py says how); and gunicorn run the way production runs it."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import process_groups
from bench.process_groups import signal_group
from tests.e2e.helpers import wait_until
from tests.e2e.private_redis import free_port

ROOT = Path(__file__).resolve().parents[2]


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> bool:
    """Send ``sig`` to ``proc``'s group and wait up to ``timeout`` s for ``proc`` to exit.

    Returns False when ``proc`` still runs; a group that is gone already counts as stopped.
    """
    signal_group(proc, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


@contextmanager
def process_group(
    cmd: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    stop_signal: int = signal.SIGTERM,
    grace: float = 10.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in a new process group, stdout and stderr to ``log``.

    On exit, however the block ends: ``stop_signal`` to the group, and after ``grace``
    seconds (or once ``proc`` exits) SIGKILL to whatever of the group is left.
    """
    with open(log, "wb") as out:
        proc = process_groups.start(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        process_groups.stop(proc, stop_signal, grace)


@dataclass(frozen=True)
class WebServer:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answers(self) -> bool:
        """Whether this gunicorn (not some other process on the port) answers ``/healthz`` with 200."""
        if self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False


@contextmanager
def gunicorn(env: Mapping[str, str], log: Path) -> Iterator[WebServer]:
    """``gunicorn -c config/gunicorn.py config.wsgi`` with ``env`` (nothing else inherited),
    bound to a free port on 127.0.0.1, one worker; yields once it answers ``/healthz``.

    It runs in a process group of its own that is stopped, workers included, on every exit.
    """
    port = free_port()
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1"}
    cmd = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"]
    with process_group(cmd, cwd=ROOT, env=env, log=log) as proc:
        server = WebServer(proc=proc, port=port, log=log)
        wait_until(server.answers, timeout=30, what=f"gunicorn on {port}; log: {log}")
        yield server
