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
  object's name) is read from the body; the proxy hop makes nginx read the body;
- ``/wait/<D>/<anything>``  204 after D ms (``WAIT_DELAYS_MS``), logged: a receiver
  that takes as long as real ones do, from Debian's echo module (``echo_sleep``, a
  timer in nginx's event loop: no thread, no process, keep-alive kept).

Each line also holds ``$request_time`` (first byte read -> response sent) and the
connection's serial number, so a run can tell how many requests the receiver held
open at once (``max_open``) and over how many connections they came.

Failing receivers besides ``/fail/``: a refused port (nothing listens) and a
hanging server (accepts, reads, never answers: ``python -m bench.receivers hang PORT``).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench import process_groups
from bench.env import Process, free_port, wait_port, which

LOG_FORMAT = r"$msec\t$http_webhook_id\t$uri\t$status\t$request_time\t$connection\t$request_body"
# The receivers that wait: D ms before answering 204, at /wait/<D>/.
WAIT_DELAYS_MS = (50, 200)
ECHO_MODULE = "ngx_http_echo_module.so"
# django-webhook's body holds the Group's name, which the driver sets to the ledger key.
DJW_KEY = re.compile(r"djw-[0-9]+-[0-9]+")


@dataclass(frozen=True)
class Arrival:
    """One request nginx received."""

    at: float  # epoch seconds (ms resolution)
    webhook_id: str
    path: str
    status: int
    seconds: float = 0.0  # nginx's $request_time: first byte read -> response sent
    connection: int = 0  # nginx's serial number of the connection it came on


def nginx_binary() -> str:
    found = which("nginx")
    if not found:
        raise SystemExit("nginx is not installed: run `make bench-deps` (apt-get install nginx-light)")
    return found


def echo_module() -> Path | None:
    """Debian's echo module (``libnginx-mod-http-echo``) in nginx's modules directory, if there."""
    binary = which("nginx")
    if binary is None:
        return None
    result = process_groups.run([binary, "-V"], timeout=60)
    found = re.search(r"--modules-path=(\S+)", result.stderr + result.stdout)
    path = Path(found.group(1) if found else "/usr/lib/nginx/modules") / ECHO_MODULE
    return path if path.exists() else None


def nginx_version() -> str:
    result = process_groups.run([nginx_binary(), "-v"], timeout=60)
    return (result.stderr or result.stdout).strip().removeprefix("nginx version: ")


class Nginx:
    """One nginx master + one worker on a free port, config and logs in ``workdir``.

    The waiting receivers exist only where the echo module is installed
    (``waits``); ``wait_url`` says how to get it when it is not.
    """

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.access_log = workdir / "access.log"
        self._offset = 0
        self.process: Process | None = None
        self.echo = echo_module()

    @property
    def waits(self) -> bool:
        return self.echo is not None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_url(self, delay_ms: int, path: str) -> str:
        """The URL of a receiver that answers 204 after ``delay_ms`` (one of ``WAIT_DELAYS_MS``)."""
        if not self.waits:
            raise RuntimeError(
                "nginx's echo module is missing: run `make bench-deps` "
                "(apt-get install libnginx-mod-http-echo)"
            )
        if delay_ms not in WAIT_DELAYS_MS:
            raise ValueError(f"no receiver waits {delay_ms} ms; there are {WAIT_DELAYS_MS}")
        return self.url(f"/wait/{delay_ms}{path}")

    def config(self) -> str:
        # `user` only means something when the master runs as root; as root the
        # worker must still be able to write the log in our work directory.
        user = "user root;\n" if os.geteuid() == 0 else ""
        load = f"load_module {self.echo};\n" if self.echo else ""
        # echo_sleep arms a timer: the request waits in the event loop, costing no worker.
        waits = "".join(
            f"        location /wait/{d}/ {{ echo_sleep {d / 1000:g}; echo_status 204; }}\n"
            for d in (WAIT_DELAYS_MS if self.echo else ())
        )
        return f"""{load}{user}worker_processes 1;
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
{waits}    }}
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
            parts = line.split("\t", 6)
            if len(parts) < 6:
                continue
            msec, wid, path, status, seconds, connection = parts[:6]
            if path.startswith("/djw/") and len(parts) == 7:
                match = DJW_KEY.search(parts[6])
                wid = match.group(0) if match else ""
            found.append(
                Arrival(
                    at=float(msec),
                    webhook_id=wid,
                    path=path,
                    status=int(status),
                    seconds=float(seconds),
                    connection=int(connection),
                )
            )
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


def max_open(arrivals: Iterable[Arrival]) -> int:
    """The most requests the receiver held at one moment: each arrival was open from
    ``at - seconds`` to ``at`` (ms resolution); one that ended as another began on the same
    millisecond counts once (a keep-alive connection's next request)."""
    edges = sorted(
        edge for a in arrivals for edge in ((round((a.at - a.seconds) * 1000), 1), (round(a.at * 1000), -1))
    )  # at equal times -1 sorts before +1
    most = open_now = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


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
