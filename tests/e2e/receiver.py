"""A real HTTP receiver on 127.0.0.1 for end-to-end tests.

Each path can be given a script of behaviours, consumed one request at a time
(the last one repeats): answer a status (with headers and a body), hang for a
while before answering, or redirect. Every request is recorded with its
arrival time, so tests can assert on what a receiver really got, and each
path counts the requests open at once (``peak_open``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    # Hundreds of senders connect at once in some tests; the default backlog of 5
    # would make most of them wait out SYN retransmissions.
    request_queue_size = 1024


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0  # seconds to wait before answering (hang)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when the request arrived


class Receiver:
    """Start with ``Receiver().start()``; ``url(path)`` gives the address."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.release = threading.Event()  # set to end every pending hang early
        self._open: dict[str, int] = {}
        self._peak_open: dict[str, int] = {}

    # -- control -------------------------------------------------------------------
    def script(self, path: str, *replies: Reply) -> str:
        with self._lock:
            self._scripts[path] = list(replies)
        return self.url(path)

    def url(self, path: str) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def peak_open(self, path: str) -> int:
        """The most requests to ``path`` open at once so far (arrived, not yet answered)."""
        with self._lock:
            return self._peak_open.get(path, 0)

    def open_now(self, path: str | None = None) -> int:
        """Requests (to ``path``, or to any) that arrived and are not yet answered."""
        with self._lock:
            return sum(n for p, n in self._open.items() if path is None or p == path)

    def wait_for(self, count: int, path: str | None = None, timeout: float = 30.0) -> list[Received]:
        """Wait until ``count`` requests arrived (at ``path``); fail the test otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received(path)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"receiver got {len(self.received(path))} of {count} requests at {path}")

    # -- server --------------------------------------------------------------------
    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            script = self._scripts.get(path) or [Reply()]
            return script.pop(0) if len(script) > 1 else script[0]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else small replies stall on delayed ACKs

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.requests.append(Received(self.path, headers, body, time.time()))
                    now_open = receiver._open[self.path] = receiver._open.get(self.path, 0) + 1
                    receiver._peak_open[self.path] = max(receiver._peak_open.get(self.path, 0), now_open)
                try:
                    reply = receiver._next_reply(self.path)
                    if reply.delay:
                        receiver.release.wait(reply.delay)
                finally:
                    # Closed before the reply goes out: a sender can only start its next
                    # request after reading this one's reply, so it is never counted twice.
                    with receiver._lock:
                        receiver._open[self.path] -= 1
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                # A 204 or 304 has no body (RFC 9110 6.4.1): bytes after it would be read
                # as the next reply on the keep-alive connection.
                body = b"" if reply.status in (204, 304) else reply.body
                if reply.status not in (204, 304):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
