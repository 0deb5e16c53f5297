"""A private ``redis-server`` for outage tests: a test may shut it down and start
it again on the same port, which the shared Redis of the suite must never see.

It keeps nothing on disk (``--save "" --appendonly no``), so every restart
comes back empty, as a Redis restarted without persistence (or flushed) does.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from bench import process_groups


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """``start()``, ``shutdown()`` (as an outage), ``start()`` again; ``kill()`` on every exit.

    The server runs in its own process group, so ``kill()`` takes it down whatever
    the test did to it.
    """

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        self.tmp = tmp
        self.port = port or free_port()
        self.log = tmp / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1)

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        """Start the server (empty) and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        cmd = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.tmp),
        ]  # fmt: skip
        with open(self.log, "ab") as out:
            self.proc = process_groups.start(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server on port {self.port} did not start:\n{self.log.read_text()[-2000:]}")

    def shutdown(self, timeout: float = 10.0) -> None:
        """``SHUTDOWN NOSAVE``: the server goes away at once and keeps nothing."""
        assert self.proc is not None
        try:
            self.client().shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        self.proc.wait(timeout)
        process_groups.stop(self.proc, signal.SIGKILL, grace=0)

    def freeze(self) -> None:
        """SIGSTOP: connections are still accepted (by the kernel) and never answered."""
        assert self.proc is not None
        process_groups.signal_group(self.proc, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        process_groups.signal_group(self.proc, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the server's process group (a no-op when it is gone already)."""
        if self.proc is not None:
            process_groups.stop(self.proc, signal.SIGKILL, grace=0)
