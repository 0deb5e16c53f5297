"""Receivers for the benchmark: nginx (cheap, logs every arrival) and failing ones.

Why nginx: a Python receiver (tests/e2e/receiver.py) costs as much CPU per
request as the sender on a 2-core machine, so it would measure itself. nginx
answers ``204`` from one worker process and writes one access-log line per
request with its arrival time (``$msec``, epoch seconds with ms) and the
``webhook-id`` header, which is all the ledger and the latency figures need.

Paths:
- ``/ok/<anything>``    204, logged (webhook-id header);
- ``/fail/<anything>``  500, logged (a failing receiver that answers);
- ``/djw/<anything>``   204 via an internal proxy hop, logged with the request
  body: django-webhook sends no per-event id header, so its ledger key (the
  object's name) is read from the body; the proxy hop makes nginx read the body.

Failing receivers besides ``/fail/``: a refused port (nothing listens) and a
hanging server (accepts, reads, never answers: ``python -m bench.receivers hang PORT``).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.env import Process, free_port, wait_port, which

LOG_FORMAT = r"$msec\t$http_webhook_id\t$uri\t$status\t$request_body"
# django-webhook's body holds the Group's name, which the driver sets to the ledger key.
DJW_KEY = re.compile(r"djw-[0-9]+-[0-9]+")


@dataclass(frozen=True)
class Arrival:
    """One request nginx received."""

    at: float  # epoch seconds (ms resolution)
    webhook_id: str
    path: str
    status: int


def nginx_binary() -> str:
    found = which("nginx")
    if not found:
        raise SystemExit("nginx is not installed: run `make bench-deps` (apt-get install nginx-light)")
    return found


def nginx_version() -> str:
    result = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, check=False)
    return (result.stderr or result.stdout).strip().removeprefix("nginx version: ")


class Nginx:
    """One nginx master + one worker on a free port, config and logs in ``workdir``."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.access_log = workdir / "access.log"
        self._offset = 0
        self.process: Process | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def config(self) -> str:
        # `user` only means something when the master runs as root; as root the
        # worker must still be able to write the log in our work directory.
        user = "user root;\n" if os.geteuid() == 0 else ""
        return f"""{user}worker_processes 1;
daemon off;
pid {self.workdir}/nginx.pid;
error_log {self.workdir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench escape=json '{LOG_FORMAT}';
    client_body_temp_path {self.workdir}/body;
    proxy_temp_path {self.workdir}/proxy;
    fastcgi_temp_path {self.workdir}/fastcgi;
    uwsgi_temp_path {self.workdir}/uwsgi;
    scgi_temp_path {self.workdir}/scgi;
    client_body_buffer_size 64k;
    client_max_body_size 1m;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        access_log {self.access_log} bench;
        location /ok/ {{ return 204; }}
        location /fail/ {{ return 500; }}
        location /djw/ {{ proxy_pass http://127.0.0.1:{self.port}/sink/; }}
        location /sink/ {{ access_log off; return 204; }}
    }}
}}
"""

    def start(self) -> Nginx:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(self.config())
        self.access_log.write_text("")
        self.process = Process(
            "nginx",
            [nginx_binary(), "-c", str(conf), "-p", str(self.workdir)],
            {},
            self.workdir / "nginx.out",
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def mark(self) -> int:
        """The current end of the log; ``arrivals(since=mark)`` reads only what came after."""
        return self.access_log.stat().st_size

    def arrivals(self, since: int = 0) -> list[Arrival]:
        """Parse the access log from byte offset ``since``."""
        return self.read_from(since)[0]

    def read_from(self, offset: int) -> tuple[list[Arrival], int]:
        """The complete lines after byte ``offset`` (nginx may be writing the last one),
        and the offset after them."""
        with open(self.access_log, "rb") as log:
            log.seek(offset)
            data = log.read()
        data = data[: data.rfind(b"\n") + 1]
        return self._parse(data), offset + len(data)

    @staticmethod
    def _parse(data: bytes) -> list[Arrival]:
        found: list[Arrival] = []
        for line in data.decode(errors="replace").splitlines():
            parts = line.split("\t", 4)
            if len(parts) < 4:
                continue
            msec, wid, path, status = parts[:4]
            if path.startswith("/djw/") and len(parts) == 5:
                match = DJW_KEY.search(parts[4])
                wid = match.group(0) if match else ""
            found.append(Arrival(at=float(msec), webhook_id=wid, path=path, status=int(status)))
        return found


class Hanging:
    """A server that accepts connections, reads, and never answers (a stuck receiver)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.process = Process(
            "hanging",
            [sys.executable, "-m", "bench.receivers", "hang", str(self.port)],
            {},
            workdir / "hanging.log",
        )
        wait_port(self.port)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.process.stop()


def refused_url(path: str) -> str:
    """A URL whose port has no listener: connection refused at once."""
    return f"http://127.0.0.1:{free_port()}{path}"


async def _hang_forever(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Read (so the client's send never blocks) until the client gives up.
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def wait_for_arrivals(
    nginx: Nginx, since: int, expected: int, timeout: float, poll: float = 0.1
) -> list[Arrival]:
    """Poll the log until ``expected`` distinct 2xx keys arrived or ``timeout`` passed.

    Each poll parses only the lines written since the last one: the benchmark
    process shares the CPU with what it measures, so waiting must cost little.
    """
    deadline = time.monotonic() + timeout
    got: list[Arrival] = []
    keys: set[tuple[str, str]] = set()
    offset = since
    while True:
        new, offset = nginx.read_from(offset)
        got += new
        keys.update((a.webhook_id, a.path) for a in new if 200 <= a.status < 300)
        if len(keys) >= expected or time.monotonic() > deadline:
            return got
        time.sleep(poll)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "hang":
        asyncio.run(_hang_forever(int(sys.argv[2])))
    else:
        raise SystemExit("usage: python -m bench.receivers hang PORT")
