"""The HTTP transport against real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from deliveries.transport import USER_AGENT, Transport

Handler = Callable[[socket.socket], None]


@pytest.fixture(autouse=True)
def _allow_loopback(settings):
    settings.HOOKPOST_ALLOWED_TARGET_NETWORKS = ["127.0.0.0/8"]
    settings.HOOKPOST_RESPONSE_MAX_BYTES = 1024


class RawServer:
    """A TCP server whose handler scripts the bytes of each connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def server() -> Iterator[Callable[[Handler], RawServer]]:
    made: list[RawServer] = []

    def make(handler: Handler) -> RawServer:
        made.append(RawServer(handler))
        return made[-1]

    yield make
    for srv in made:
        srv.sock.close()


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    while len(rest) < length:
        rest += conn.recv(65536)
    return head


def _send(transport: Transport, url: str, timeout: float = 2.0):
    return transport.send(url, {"Content-Type": "application/json"}, b'{"a":1}', timeout=timeout)


def test_headers_dripped_forever_are_cut_at_the_deadline(server):
    def drip_headers(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for i in range(200):
            conn.sendall(b"X-Drip: %d\r\n" % i)
            time.sleep(0.2)

    srv = server(drip_headers)

    result = _send(Transport(), srv.url(), timeout=1.0)

    # Only the deadline ends it as a Timeout: a read timeout never fires (a header every 0.2 s),
    # and the server closing after 40 s would be a disconnect
    assert result.error_class == "Timeout"


def test_body_dripped_forever_is_cut_at_the_deadline(server):
    def drip_body(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(200):
            conn.sendall(b"x")
            time.sleep(0.2)

    srv = server(drip_body)

    result = _send(Transport(), srv.url(), timeout=1.0)

    # Only the deadline ends it as a Timeout (see above; the body stops 99,800 bytes short)
    assert result.error_class == "Timeout"


def test_response_read_is_capped(server):
    def big(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"y" * 1_000_000)

    result = _send(Transport(), server(big).url())

    assert result.status == 200 and result.ok
    assert len(result.body) == 1024


def test_redirects_are_not_followed_and_user_agent_is_fixed(server):
    seen: list[bytes] = []

    def redirect(conn: socket.socket) -> None:
        seen.append(_read_request(conn))
        conn.sendall(
            b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\nContent-Length: 0\r\n\r\n"
        )

    result = _send(Transport(), server(redirect).url())

    assert result.status == 302 and not result.ok
    assert len(seen) == 1
    assert f"User-Agent: {USER_AGENT}".encode() in seen[0]


def test_keep_alive_connections_are_reused(server):
    def keep_alive(conn: socket.socket) -> None:
        for _ in range(3):
            _read_request(conn)
            conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    srv = server(keep_alive)
    transport = Transport()

    results = [_send(transport, srv.url()) for _ in range(3)]

    assert [r.status for r in results] == [204, 204, 204]
    assert srv.connections == 1


def test_refused_connection_is_a_result_not_an_exception():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now

    result = _send(Transport(), f"http://127.0.0.1:{port}/hook")

    assert result.status is None
    assert result.error_class == "ConnectionError"


def test_a_checked_url_follows_the_allowlist_it_was_checked_against(settings, server):
    def keep_alive(conn: socket.socket) -> None:
        for _ in range(2):
            _read_request(conn)
            conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    url = server(keep_alive).url()
    transport = Transport()

    assert _send(transport, url).status == 204
    settings.HOOKPOST_ALLOWED_TARGET_NETWORKS = []  # the URL is checked once per allowlist, not once
    refused = _send(transport, url)
    settings.HOOKPOST_ALLOWED_TARGET_NETWORKS = ["127.0.0.0/8"]

    assert (refused.status, refused.error_class) == (None, "TargetRejected")
    assert _send(transport, url).status == 204


def _answer(raw: bytes) -> Handler:
    def handler(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(raw)

    return handler


def test_odd_reply_headers_come_back_storable(server):
    # given a 200 whose headers hold bytes beyond Latin-1 and a repeated field
    raw = (
        b"HTTP/1.1 200 OK\r\nX-Emoji: " + "😀 café".encode() + b"\r\n"
        b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok"
    )

    result = _send(Transport(), server(_answer(raw)).url())

    # then it is a 200, its headers kept byte for byte (Latin-1) and joined
    assert result.ok and result.body == b"ok"
    assert result.headers["x-emoji"].encode("latin-1") == "😀 café".encode()
    assert result.headers["set-cookie"] == "a=1, b=2"


def test_a_reply_with_nul_in_a_header_is_refused_as_rfc_9110_allows(server):
    # RFC 9110 5.5: a recipient of NUL in a field value MUST reject the message or
    # replace it; the parser rejects it, and the result says so in storable text.
    raw = b"HTTP/1.1 200 OK\r\nX-Note: a\x00b\r\nContent-Length: 2\r\n\r\nok"

    result = _send(Transport(), server(_answer(raw)).url())

    assert (result.status, result.error_class) == (None, "ConnectionError")
    assert "\x00" not in result.error_message and "header" in result.error_message.lower()


def test_a_body_that_does_not_decompress_is_still_the_receivers_2xx(server):
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!"

    result = _send(Transport(), server(_answer(raw)).url())

    assert (result.status, result.error_class, result.body) == (200, "", b"not gzip!")


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 2\x00\xff garbage\r\n\r\n",
        b"\x00\x01\x02 not http at all\r\n\r\n",
        "HTTP/1.1 2²0 OK\r\nContent-Length: 0\r\n\r\n".encode("latin-1"),
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
    ids=["nul-in-status", "not-http", "unicode-digit-status", "header-over-64k"],
)
def test_a_garbage_reply_is_a_storable_connection_error(server, raw):
    result = _send(Transport(), server(_answer(raw)).url())

    assert (result.status, result.error_class) == (None, "ConnectionError")
    assert "\x00" not in result.error_message and len(result.error_message) <= 1000


@pytest.mark.parametrize(
    "headers",
    [{"X-Emoji": "😀 café"}, {"X-Split": "a\r\nInjected: yes"}, {"X-Nul": "a\x00b"}, {"Bad Name": "x"}],
)
def test_headers_that_cannot_be_sent_are_refused_before_connecting(server, headers):
    # given headers stored before the header rules (the API refuses them now)
    srv = server(_answer(b"HTTP/1.1 204 No Content\r\n\r\n"))

    result = Transport().send(srv.url(), headers, b"{}", timeout=2.0)

    # then nothing is sent, and the refusal is a result saying why
    assert (result.status, result.error_class, result.connected) == (None, "HeaderRejected", False)
    assert "header" in result.error_message
    assert srv.connections == 0


def test_latin1_header_values_are_sent_as_latin1(server):
    seen: list[bytes] = []

    def record(conn: socket.socket) -> None:
        seen.append(_read_request(conn))
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    result = Transport().send(server(record).url(), {"X-Name": "café"}, b"{}", timeout=2.0)

    assert result.status == 204
    assert b"X-Name: caf\xe9" in seen[0]
