"""The transport refuses internal addresses even when a DNS name points at them.

The host name resolves (through ``HOOKPOST_RESOLVE``, like ``curl --resolve``)
to an address the policy forbids; the engine runs in-process against the real
database. A real listener on 127.0.0.1 and [::1] at the endpoint's port, plus a
spy on every outgoing ``socket.connect``, prove that no connection is made.
A control case with the address allowlisted shows the same listener and spy
do see a connection when one happens.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from deliveries.engine import delivery_run
from deliveries.models import Attempt, Delivery
from deliveries.services import NewMessage, message_publish
from tests.factories import EndpointFactory, EventTypeFactory, TenantFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

HOST = "evil.example.test"


class Listener:
    """Accepts TCP connections on 127.0.0.1 and [::1] at one port, records each
    request's bytes and answers 200."""

    def __init__(self) -> None:
        self.connections: list[bytes] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> Listener:
        v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        v4.bind(("127.0.0.1", 0))
        self.port = v4.getsockname()[1]
        self._sockets.append(v4)
        try:
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            v6.bind(("::1", self.port))
            self._sockets.append(v6)
        except OSError:  # no IPv6 loopback here; the connect spy still watches
            pass
        for sock in self._sockets:
            sock.listen(16)
            sock.settimeout(0.1)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()
        return self

    def _serve(self, sock: socket.socket) -> None:
        while sock.fileno() != -1:
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                except OSError:
                    pass
            with self._lock:
                self.connections.append(data)

    def stop(self) -> None:
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener().start()
    yield server
    server.stop()


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address a Python socket of this process tries to connect to."""
    seen: list[Any] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        seen.append(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        seen.append(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return seen


def _meaning(spelling: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address a resolver means by ``spelling`` (inet_aton reads 2130706433, 0x7f.1)."""
    try:
        return ipaddress.ip_address(spelling)
    except ValueError:
        return ipaddress.IPv4Address(socket.inet_aton(spelling))


def _publish_to(port: int) -> Delivery:
    """An endpoint at http://evil.example.test:<port>/hook, created directly (the
    API would not know this name), and a message published to it."""
    tenant = TenantFactory.create()
    event_type = EventTypeFactory.create()
    EndpointFactory.create(tenant=tenant, url=f"http://{HOST}:{port}/hook")
    published = message_publish(tenant=tenant, new=NewMessage(event_type=event_type.name, payload={"x": 1}))
    return Delivery.objects.get(message=published.message)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("2130706433", "loopback"),  # 127.0.0.1 spelled as one number
        ("::ffff:127.0.0.1", "IPv4-mapped"),
        ("0177.0.0.1", "loopback"),  # octal
        ("0x7f.1", "loopback"),  # hexadecimal, short form
    ],
)
def test_a_name_resolving_to_an_internal_address_is_refused_without_connecting(
    address: str, reason: str, settings, listener: Listener, connects: list[Any]
):
    # Given a host name that resolves to an internal address, and no allowlist
    settings.HOOKPOST_ALLOWED_TARGET_NETWORKS = []
    settings.HOOKPOST_RESOLVE = [f"{HOST}={address}"]
    delivery = _publish_to(listener.port)

    # When the engine attempts the delivery
    outcome = delivery_run(delivery_id=delivery.pk, token=delivery.lease_token)

    # Then the attempt is recorded as failed, refused by the address policy
    assert outcome == Delivery.Status.FAILED
    (attempt,) = Attempt.objects.filter(delivery=delivery)
    assert attempt.number == 1
    assert attempt.response_status is None
    assert attempt.error_class == "TargetRejected"
    # ... with a reason naming the host and the address it resolved to
    meant = str(_meaning(address))
    assert HOST in attempt.error_message and meant in attempt.error_message, attempt.error_message
    assert reason in attempt.error_message, attempt.error_message
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED and delivery.next_attempt_at is not None
    assert "TargetRejected" in delivery.last_error and delivery.lease_token is None
    # ... and no connection was made, or even tried
    assert [a for a in connects if isinstance(a, tuple) and listener.port in a] == []
    assert listener.connections == []


def test_control_the_same_name_allowlisted_is_connected_pinned_to_the_vetted_address(
    settings, listener: Listener, connects: list[Any]
):
    # Given the same setup with loopback allowlisted
    settings.HOOKPOST_ALLOWED_TARGET_NETWORKS = ["127.0.0.0/8"]
    settings.HOOKPOST_RESOLVE = [f"{HOST}=127.0.0.1"]
    delivery = _publish_to(listener.port)

    # When the engine attempts the delivery
    outcome = delivery_run(delivery_id=delivery.pk, token=delivery.lease_token)

    # Then the listener and the spy both see the connection, to the vetted
    # address, with the endpoint's host name in the Host header
    assert outcome == Delivery.Status.SUCCEEDED
    assert ("127.0.0.1", listener.port) in connects
    (request,) = listener.connections
    assert request.startswith(b"POST /hook HTTP/1.1\r\n")
    assert f"\r\nhost: {HOST}:{listener.port}\r\n".encode() in request.lower()
    assert Attempt.objects.get(delivery=delivery).response_status == 200
