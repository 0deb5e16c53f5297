"""Any reply is recordable: a receiver that answers binary, NUL-laden and
malformed replies gets each message exactly once, and every attempt has its
row.

The receiver here writes raw bytes on a socket (``http.server`` cannot send a
NUL in a header, bytes beyond Latin-1, a garbage status line or a body that
never ends). Each path has its own endpoint and its own reply; every endpoint
gets every message.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from deliveries.models import Attempt, Delivery
from tests.e2e.helpers import publish, wait_for_status
from webhooks.models import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NOT_UTF8 = b"caf\xe9 \xff\xfe \xc3\x28 end"
HUGE = b"h" * 60_000  # under http.client's 64 KiB line limit: a reply, not a broken one


def _ok(body: bytes, *headers: bytes) -> bytes:
    head = b"".join(h + b"\r\n" for h in (b"HTTP/1.1 200 OK", *headers, b"Content-Length: %d" % len(body)))
    return head + b"\r\n" + body


# 2xx replies: each message delivered once, the delivery succeeded.
SUCCESSES = {
    "/nul-body": _ok(b"ok\x00thanks"),
    "/gif": _ok(GIF, b"Content-Type: image/gif"),
    "/not-utf8": _ok(NOT_UTF8, b"Content-Type: text/plain; charset=utf-8"),
    "/beyond-latin1-header": _ok(b"ok", "X-Emoji: 😀 café".encode(), b"X-Raw: \xff\xfe\x80"),
    "/huge-header": _ok(b"ok", b"X-Big: " + HUGE),
    "/broken-gzip": _ok(b"\x1f\x8bnot gzip at all", b"Content-Encoding: gzip"),
}
# Replies the HTTP parser refuses: NUL in a header field (RFC 9110 5.5 lets a recipient
# reject the message). A failed attempt with the reason, like a garbage status line.
REFUSED = {"/nul-header": _ok(b"ok", b"X-Note: a\x00b")}
GARBAGE_STATUS = b"HTTP/1.1 2\x00\xff garbage\r\nX-A: b\r\n\r\nwhatever"
ENDLESS_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n"


class RawReceiver:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 that answers each path with
    fixed raw bytes; records (path, webhook-id) of every request."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path: str) -> Counter[str]:
        with self._lock:
            return Counter(message for p, message in self.got if p == path)

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        with self._lock:
            for conn in self._conns:  # the sender's keep-alive connections
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        buffered = b""
        try:
            while not self._stop.is_set():
                request, buffered = _read_request(conn, buffered)
                if request is None:
                    return
                path, message = request
                with self._lock:
                    self.got.append((path, message))
                if path == "/garbage-status":
                    conn.sendall(GARBAGE_STATUS)
                    return
                if path == "/endless-body":
                    conn.sendall(ENDLESS_HEAD)
                    while not self._stop.is_set():  # until the sender hangs up
                        conn.sendall(b"x")
                        time.sleep(0.1)
                    return
                if path in REFUSED:
                    conn.sendall(REFUSED[path])
                    return
                conn.sendall(SUCCESSES[path])
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()


def _read_request(conn: socket.socket, buffered: bytes) -> tuple[tuple[str, str] | None, bytes]:
    """((path, webhook-id), what is left) of the next request on ``conn``; None at its end."""
    while b"\r\n\r\n" not in buffered:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        buffered += chunk
    head, _, rest = buffered.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(fields.get("content-length", "0"))
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        rest += chunk
    return (lines[0].split(" ")[1], fields.get("webhook-id", "")), rest[length:]


@pytest.fixture
def raw_receiver() -> Iterator[RawReceiver]:
    server = RawReceiver()
    yield server
    server.stop()


def _register(api: APIClient, tenant: Tenant, url: str, **fields: object) -> str:
    response = api.post(f"/api/v1/tenants/{tenant.uid}/endpoints/", {"url": url, **fields}, format="json")
    assert response.status_code == 201, response.json()
    return str(response.json()["id"])


def test_every_reply_is_recorded_once_and_nothing_is_sent_twice(
    worker, raw_receiver: RawReceiver, e2e_settings, make_client, tenant, event_type
):
    # Given one endpoint per odd reply; the failing ones retry only in an hour
    api = make_client(tenant).client
    endpoints = {path: _register(api, tenant, raw_receiver.url(path)) for path in SUCCESSES}
    for path in ("/garbage-status", "/endless-body", *REFUSED):
        endpoints[path] = _register(
            api, tenant, raw_receiver.url(path), timeout_seconds=2, retry_schedule=[3600]
        )

    # When three messages are published to all of them
    messages = [publish(api, tenant, event_type, {"n": n}) for n in range(3)]

    # Then every 2xx reply ended its delivery as succeeded, and the others as failed once
    final = {}
    for path, endpoint in endpoints.items():
        status = Delivery.Status.SUCCEEDED if path in SUCCESSES else Delivery.Status.FAILED
        for message in messages:
            final[path, message] = wait_for_status(message, endpoint, status, timeout=30)
    time.sleep(1.0)  # a duplicate already on its way would arrive by now

    # And the receiver got each message exactly once at each path
    for path in endpoints:
        assert raw_receiver.received(path) == Counter(messages), path

    # And each delivery has one attempt, no internal failure, the reply as stored
    rows: dict[str, list[Attempt]] = {}
    for (path, _), delivery in final.items():
        delivery.refresh_from_db()
        (attempt,) = Attempt.objects.filter(delivery=delivery)
        assert (delivery.attempt_count, delivery.internal_failures) == (1, 0), (path, delivery.last_error)
        rows.setdefault(path, []).append(attempt)
    for path, attempts in rows.items():
        assert len(attempts) == len(messages)
        for attempt in attempts:
            _assert_stored(path, attempt)


def _assert_stored(path: str, attempt: Attempt) -> None:
    if path in SUCCESSES:
        assert (attempt.response_status, attempt.error_class) == (200, ""), (path, attempt.error_message)
    body, headers = attempt.response_body, attempt.response_headers
    if path == "/nul-body":
        assert body == "ok\\x00thanks"
    elif path == "/gif":
        assert body == GIF.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
        assert headers["content-type"] == "image/gif"
    elif path == "/not-utf8":
        assert body == "caf\\xe9 \\xff\\xfe \\xc3( end"
    elif path == "/nul-header":
        assert (attempt.response_status, attempt.error_class) == (None, "ConnectionError")
        assert "Invalid HTTP header" in attempt.error_message and "\x00" not in attempt.error_message
    elif path == "/beyond-latin1-header":
        # Header bytes are kept one character per byte (Latin-1): nothing lost.
        assert headers["x-emoji"].encode("latin-1") == "😀 café".encode()
        assert headers["x-raw"] == "\xff\xfe\x80"
    elif path == "/huge-header":
        assert headers["x-big"].startswith("hhh") and headers["x-big"].endswith("…")
        assert len(headers["x-big"]) <= 1024
    elif path == "/broken-gzip":
        assert body == "\x1f\\x8bnot gzip at all" and headers["content-encoding"] == "gzip"
    elif path == "/garbage-status":
        assert (attempt.response_status, attempt.error_class) == (None, "ConnectionError")
        assert "Bad status line" in attempt.error_message and "\x00" not in attempt.error_message
    elif path == "/endless-body":
        assert (attempt.response_status, attempt.error_class) == (None, "Timeout")
    else:
        raise AssertionError(path)
